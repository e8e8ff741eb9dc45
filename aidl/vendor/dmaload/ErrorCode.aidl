/*
 * Copyright (C) 2026 The dmaload Authors
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *      http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

package vendor.dmaload;

/**
 * Service-specific error codes (ServiceSpecificException.errorCode). Identical to the engine's
 * ErrorCode and to the C API's DMALOAD_E_* values. Numbers never change meaning; new codes are
 * appended in later versions.
 */
@VintfStability
@Backing(type="int")
enum ErrorCode {
    /** A request field is malformed (negative where not allowed, bad tunable). */
    INVALID_ARGUMENT = 1,
    /** A segment fd is closed, not a regular file, O_PATH, or not open for reading. */
    BAD_FD = 2,
    /** A file range lies past EOF or offset + length overflows. */
    RANGE = 3,
    /** No segments, too many, overlapping in the buffer, or beyond the buffer. */
    BAD_SEGMENTS = 4,
    /** The heap/backend name is unknown or not present on this device. */
    UNKNOWN_BACKEND = 5,
    /** The backend exists but the service configuration disables it. */
    BACKEND_NOT_ALLOWED = 6,
    /** The buffer would be larger than the maximum buffer size. */
    TOO_LARGE = 7,
    /** The service's global byte cap would be exceeded; retry later. */
    GLOBAL_CAP = 8,
    /** The caller's byte cap would be exceeded; release buffers first. */
    CALLER_CAP = 9,
    /** Too many concurrent loads (service-wide or for this caller); retry later. */
    BUSY = 10,
    /** The kernel refused the allocation. */
    NO_MEMORY = 11,
    /** A read failed; the message carries the errno. */
    IO = 12,
    /** The file shrank or was truncated during the load. */
    FILE_CHANGED = 13,
    /** The load was cancelled, by the caller or because the caller died. */
    CANCELLED = 14,
    /** The caller is not allowed to use the service. */
    PERMISSION_DENIED = 15,
    /** Unknown load handle or buffer id. */
    NOT_FOUND = 16,
    /** A bug in the service; the message has details. */
    INTERNAL = 17,
    /**
     * Version 2: the request names more distinct files than IDmaLoader.MAX_FILES (or, in the
     * version 1 layout, carries more segment fds than the service accepts). Put several
     * segments of one file behind one LoadRequest.files entry, or split the load.
     */
    TOO_MANY_FILES = 18,
    /**
     * Version 2: a digest in LoadRequest.expectedDigests differs from the one the service
     * computed while loading (or the kernel measured). Nothing was handed out and every byte
     * was freed; the file is not the one expected.
     */
    DIGEST_MISMATCH = 19,
}
