//! Pins every ioctl number, flag and struct layout this crate defines or takes from `libc`
//! against the kernel's uapi headers: a C program compiled against the host's
//! <linux/*.h> (Debian's linux-libc-dev) prints each C expression of [`pinned`], and its
//! value must equal the Rust value beside it.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::process::Command;
use std::sync::OnceLock;

use crate::{dma_buf, dma_heap, file, statx, udmabuf, verity};

const HEADERS: [&str; 9] = [
    "linux/dma-buf.h",
    "linux/dma-heap.h",
    "linux/fcntl.h",
    "linux/fs.h",
    "linux/fsverity.h",
    "linux/memfd.h",
    "linux/mman.h",
    "linux/stat.h",
    "linux/udmabuf.h",
];

/// (C expression, the Rust value it must have).
fn pinned() -> Vec<(&'static str, u64)> {
    // ioctl numbers are 32 bits whatever type `libc::ioctl` takes here.
    let request = |r: crate::ioctl::Request| u64::from(r as u32);
    let int = |v: libc::c_int| v as u64;
    let size = |n: usize| n as u64;
    use dma_heap::AllocationData as Alloc;
    use udmabuf::CreateArgs as Create;
    use verity::{EnableArgs, ReadMetadataArgs};
    vec![
        (
            "DMA_HEAP_IOCTL_ALLOC",
            request(dma_heap::DMA_HEAP_IOCTL_ALLOC),
        ),
        (
            "sizeof(struct dma_heap_allocation_data)",
            size(size_of::<Alloc>()),
        ),
        (
            "offsetof(struct dma_heap_allocation_data, len)",
            size(offset_of!(Alloc, len)),
        ),
        (
            "offsetof(struct dma_heap_allocation_data, fd)",
            size(offset_of!(Alloc, fd)),
        ),
        (
            "offsetof(struct dma_heap_allocation_data, fd_flags)",
            size(offset_of!(Alloc, fd_flags)),
        ),
        (
            "offsetof(struct dma_heap_allocation_data, heap_flags)",
            size(offset_of!(Alloc, heap_flags)),
        ),
        ("DMA_BUF_IOCTL_SYNC", request(dma_buf::DMA_BUF_IOCTL_SYNC)),
        (
            "sizeof(struct dma_buf_sync)",
            size(size_of::<dma_buf::SyncArgs>()),
        ),
        ("DMA_BUF_SYNC_READ", dma_buf::SYNC_READ),
        ("DMA_BUF_SYNC_WRITE", dma_buf::SYNC_WRITE),
        ("DMA_BUF_SYNC_RW", dma_buf::SYNC_RW),
        ("DMA_BUF_SYNC_START", dma_buf::SYNC_START),
        ("DMA_BUF_SYNC_END", dma_buf::SYNC_END),
        ("DMA_BUF_SET_NAME_B", request(dma_buf::DMA_BUF_SET_NAME_B)),
        ("DMA_BUF_NAME_LEN", size(dma_buf::NAME_LEN)),
        ("UDMABUF_CREATE", request(udmabuf::UDMABUF_CREATE)),
        ("UDMABUF_FLAGS_CLOEXEC", u64::from(udmabuf::FLAGS_CLOEXEC)),
        ("sizeof(struct udmabuf_create)", size(size_of::<Create>())),
        (
            "offsetof(struct udmabuf_create, memfd)",
            size(offset_of!(Create, memfd)),
        ),
        (
            "offsetof(struct udmabuf_create, flags)",
            size(offset_of!(Create, flags)),
        ),
        (
            "offsetof(struct udmabuf_create, offset)",
            size(offset_of!(Create, offset)),
        ),
        (
            "offsetof(struct udmabuf_create, size)",
            size(offset_of!(Create, size)),
        ),
        ("MFD_CLOEXEC", u64::from(libc::MFD_CLOEXEC)),
        ("MFD_ALLOW_SEALING", u64::from(libc::MFD_ALLOW_SEALING)),
        ("MFD_HUGETLB", u64::from(libc::MFD_HUGETLB)),
        ("MFD_HUGE_2MB", u64::from(libc::MFD_HUGE_2MB)),
        ("F_ADD_SEALS", int(libc::F_ADD_SEALS)),
        ("F_SEAL_SEAL", int(libc::F_SEAL_SEAL)),
        ("F_SEAL_SHRINK", int(libc::F_SEAL_SHRINK)),
        ("F_SEAL_GROW", int(libc::F_SEAL_GROW)),
        ("MADV_DONTNEED", int(libc::MADV_DONTNEED)),
        ("MADV_HUGEPAGE", int(libc::MADV_HUGEPAGE)),
        ("MADV_POPULATE_WRITE", int(libc::MADV_POPULATE_WRITE)),
        ("STATX_TYPE", u64::from(libc::STATX_TYPE)),
        ("STATX_SIZE", u64::from(libc::STATX_SIZE)),
        ("STATX_DIOALIGN", u64::from(libc::STATX_DIOALIGN)),
        ("sizeof(struct statx)", size(size_of::<libc::statx>())),
        (
            "offsetof(struct statx, stx_mask)",
            size(offset_of!(libc::statx, stx_mask)),
        ),
        (
            "offsetof(struct statx, stx_mode)",
            size(offset_of!(libc::statx, stx_mode)),
        ),
        (
            "offsetof(struct statx, stx_size)",
            size(offset_of!(libc::statx, stx_size)),
        ),
        (
            "offsetof(struct statx, stx_dio_mem_align)",
            size(offset_of!(libc::statx, stx_dio_mem_align)),
        ),
        (
            "offsetof(struct statx, stx_dio_offset_align)",
            size(offset_of!(libc::statx, stx_dio_offset_align)),
        ),
        (
            "offsetof(struct statx, stx_attributes)",
            size(offset_of!(libc::statx, stx_attributes)),
        ),
        (
            "offsetof(struct statx, stx_attributes_mask)",
            size(offset_of!(libc::statx, stx_attributes_mask)),
        ),
        ("STATX_ATTR_VERITY", statx::STATX_ATTR_VERITY),
        (
            "FS_IOC_ENABLE_VERITY",
            request(verity::FS_IOC_ENABLE_VERITY),
        ),
        (
            "FS_IOC_MEASURE_VERITY",
            request(verity::FS_IOC_MEASURE_VERITY),
        ),
        (
            "FS_IOC_READ_VERITY_METADATA",
            request(verity::FS_IOC_READ_VERITY_METADATA),
        ),
        (
            "FS_VERITY_HASH_ALG_SHA256",
            u64::from(verity::HASH_ALG_SHA256),
        ),
        (
            "FS_VERITY_METADATA_TYPE_DESCRIPTOR",
            verity::METADATA_TYPE_DESCRIPTOR,
        ),
        (
            "sizeof(struct fsverity_digest)",
            size(size_of::<verity::DigestHeader>()),
        ),
        (
            "sizeof(struct fsverity_enable_arg)",
            size(size_of::<EnableArgs>()),
        ),
        (
            "offsetof(struct fsverity_enable_arg, salt_ptr)",
            size(offset_of!(EnableArgs, salt_ptr)),
        ),
        (
            "offsetof(struct fsverity_enable_arg, sig_ptr)",
            size(offset_of!(EnableArgs, sig_ptr)),
        ),
        (
            "sizeof(struct fsverity_read_metadata_arg)",
            size(size_of::<ReadMetadataArgs>()),
        ),
        (
            "offsetof(struct fsverity_read_metadata_arg, buf_ptr)",
            size(offset_of!(ReadMetadataArgs, buf_ptr)),
        ),
        (
            "sizeof(struct fsverity_descriptor)",
            size(verity::DESCRIPTOR_BYTES),
        ),
        (
            "offsetof(struct fsverity_descriptor, data_size)",
            size(verity::DESCRIPTOR_DATA_SIZE_AT),
        ),
        (
            "offsetof(struct fsverity_descriptor, root_hash)",
            size(verity::DESCRIPTOR_ROOT_HASH_AT),
        ),
        // Headers before Linux 6.14 lack it (the program then prints nothing for it; the
        // file module's test pins it against the libc crate as well).
        ("RWF_DONTCACHE", int(file::RWF_DONTCACHE)),
    ]
}

/// The C program: one `printf` of each expression's text and value.
fn program() -> String {
    let mut c = String::from("#include <stddef.h>\n#include <stdio.h>\n");
    for header in HEADERS {
        c += &format!("#include <{header}>\n");
    }
    c += "#define P(x) printf(\"%s %llu\\n\", #x, (unsigned long long)(x))\n";
    c += "int main(void) {\n";
    for (expr, _) in pinned() {
        if expr == "RWF_DONTCACHE" {
            c += "#ifdef RWF_DONTCACHE\n    P(RWF_DONTCACHE);\n#endif\n";
        } else {
            c += &format!("    P({expr});\n");
        }
    }
    c + "    return 0;\n}\n"
}

/// What [`program`] prints, expression → value (compiled and run once per test process).
fn header_values() -> &'static BTreeMap<String, u64> {
    static VALUES: OnceLock<BTreeMap<String, u64>> = OnceLock::new();
    VALUES.get_or_init(compile_and_run)
}

fn compile_and_run() -> BTreeMap<String, u64> {
    let dir = std::env::temp_dir().join(format!("dmaload-abi-uapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let source = dir.join("uapi.c");
    let binary = dir.join("uapi");
    std::fs::write(&source, program()).expect("write uapi.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".to_string());
    let compiled = Command::new(&cc)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {cc} failed ({e}): this test needs a C compiler and the kernel \
                 headers (apt-get install gcc linux-libc-dev)"
            )
        });
    assert!(
        compiled.status.success(),
        "{cc} could not compile the uapi program (apt-get install linux-libc-dev for the \
         kernel headers):\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let run = Command::new(&binary)
        .output()
        .expect("run the uapi program");
    assert!(run.status.success(), "the uapi program failed");
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(run.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').expect("EXPRESSION VALUE");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn ioctl_numbers_flags_and_layouts_match_the_kernel_headers() {
    let headers = header_values();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (name, value) in pinned() {
        let Some(&expected) = headers.get(name) else {
            assert_eq!(name, "RWF_DONTCACHE", "the uapi program printed no {name}");
            continue;
        };
        checked += 1;
        if value != expected {
            wrong.push(format!("{name}: ours {value:#x}, headers {expected:#x}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "differs from the kernel headers:\n{}",
        wrong.join("\n")
    );
    assert!(checked >= pinned().len() - 1);
}

#[test]
fn a_wrong_number_would_be_caught() {
    // The comparison above is against a real program's output, not against itself.
    let headers = header_values();
    assert_eq!(headers.get("DMA_HEAP_IOCTL_ALLOC"), Some(&0xc018_4800));
    assert_eq!(headers.get("DMA_BUF_IOCTL_SYNC"), Some(&0x4008_6200));
    assert_eq!(headers.get("UDMABUF_CREATE"), Some(&0x4018_7542));
    assert_eq!(headers.get("FS_IOC_MEASURE_VERITY"), Some(&0xc004_6686));
}
