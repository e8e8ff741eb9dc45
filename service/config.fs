# The dmaloadd user and group (TARGET_FS_CONFIG_GEN += vendor/dmaload/service/config.fs).
# The value must be free in the device's vendor AID range (2900-2999).
[AID_VENDOR_DMALOAD]
value: 2950
