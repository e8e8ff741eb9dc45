//! Pins every ioctl number, flag and struct layout this crate defines or takes from `libc`
//! against the kernel's uapi headers: a C program compiled against the host's
//! <linux/*.h> (Debian's linux-libc-dev) prints them, and they must equal the Rust values.

use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::process::Command;
use std::sync::OnceLock;

use crate::{dma_buf, dma_heap, file, udmabuf};

const PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/memfd.h>
#include <linux/mman.h>
#include <linux/stat.h>
#include <linux/udmabuf.h>

#define P(name, value) printf("%s %llu\n", name, (unsigned long long)(value))

int main(void) {
    P("DMA_HEAP_IOCTL_ALLOC", DMA_HEAP_IOCTL_ALLOC);
    P("sizeof dma_heap_allocation_data", sizeof(struct dma_heap_allocation_data));
    P("offsetof dma_heap_allocation_data.len", offsetof(struct dma_heap_allocation_data, len));
    P("offsetof dma_heap_allocation_data.fd", offsetof(struct dma_heap_allocation_data, fd));
    P("offsetof dma_heap_allocation_data.fd_flags", offsetof(struct dma_heap_allocation_data, fd_flags));
    P("offsetof dma_heap_allocation_data.heap_flags", offsetof(struct dma_heap_allocation_data, heap_flags));

    P("DMA_BUF_IOCTL_SYNC", DMA_BUF_IOCTL_SYNC);
    P("sizeof dma_buf_sync", sizeof(struct dma_buf_sync));
    P("DMA_BUF_SYNC_READ", DMA_BUF_SYNC_READ);
    P("DMA_BUF_SYNC_WRITE", DMA_BUF_SYNC_WRITE);
    P("DMA_BUF_SYNC_RW", DMA_BUF_SYNC_RW);
    P("DMA_BUF_SYNC_START", DMA_BUF_SYNC_START);
    P("DMA_BUF_SYNC_END", DMA_BUF_SYNC_END);
    P("DMA_BUF_SET_NAME_B", DMA_BUF_SET_NAME_B);
    P("DMA_BUF_NAME_LEN", DMA_BUF_NAME_LEN);

    P("UDMABUF_CREATE", UDMABUF_CREATE);
    P("UDMABUF_FLAGS_CLOEXEC", UDMABUF_FLAGS_CLOEXEC);
    P("sizeof udmabuf_create", sizeof(struct udmabuf_create));
    P("offsetof udmabuf_create.memfd", offsetof(struct udmabuf_create, memfd));
    P("offsetof udmabuf_create.flags", offsetof(struct udmabuf_create, flags));
    P("offsetof udmabuf_create.offset", offsetof(struct udmabuf_create, offset));
    P("offsetof udmabuf_create.size", offsetof(struct udmabuf_create, size));

    P("MFD_CLOEXEC", MFD_CLOEXEC);
    P("MFD_ALLOW_SEALING", MFD_ALLOW_SEALING);
    P("MFD_HUGETLB", MFD_HUGETLB);
    P("MFD_HUGE_2MB", MFD_HUGE_2MB);
    P("F_ADD_SEALS", F_ADD_SEALS);
    P("F_SEAL_SEAL", F_SEAL_SEAL);
    P("F_SEAL_SHRINK", F_SEAL_SHRINK);
    P("F_SEAL_GROW", F_SEAL_GROW);
    P("MADV_DONTNEED", MADV_DONTNEED);
    P("MADV_HUGEPAGE", MADV_HUGEPAGE);
    P("MADV_POPULATE_WRITE", MADV_POPULATE_WRITE);

    P("STATX_TYPE", STATX_TYPE);
    P("STATX_SIZE", STATX_SIZE);
    P("STATX_DIOALIGN", STATX_DIOALIGN);
    P("sizeof statx", sizeof(struct statx));
    P("offsetof statx.stx_mask", offsetof(struct statx, stx_mask));
    P("offsetof statx.stx_mode", offsetof(struct statx, stx_mode));
    P("offsetof statx.stx_size", offsetof(struct statx, stx_size));
    P("offsetof statx.stx_dio_mem_align", offsetof(struct statx, stx_dio_mem_align));
    P("offsetof statx.stx_dio_offset_align", offsetof(struct statx, stx_dio_offset_align));
#ifdef RWF_DONTCACHE
    P("RWF_DONTCACHE", RWF_DONTCACHE);
#endif
    return 0;
}
"#;

/// What [`PROGRAM`] prints, name → value (compiled and run once per test process).
fn header_values() -> &'static BTreeMap<String, u64> {
    static VALUES: OnceLock<BTreeMap<String, u64>> = OnceLock::new();
    VALUES.get_or_init(compile_and_run)
}

fn compile_and_run() -> BTreeMap<String, u64> {
    let dir = std::env::temp_dir().join(format!("dmaload-abi-uapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let source = dir.join("uapi.c");
    let binary = dir.join("uapi");
    std::fs::write(&source, PROGRAM).expect("write uapi.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "gcc".to_string());
    let compiled = Command::new(&cc)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {cc} failed ({e}): the uapi pin test needs a C compiler (apt-get install gcc linux-libc-dev)")
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
            let (name, value) = line.rsplit_once(' ').expect("NAME VALUE");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

fn ours() -> Vec<(&'static str, u64)> {
    // ioctl numbers are 32 bits whatever type `libc::ioctl` takes here.
    let request = |r: crate::ioctl::Request| u64::from(r as u32);
    let int = |v: libc::c_int| v as u64;
    vec![
        (
            "DMA_HEAP_IOCTL_ALLOC",
            request(dma_heap::DMA_HEAP_IOCTL_ALLOC),
        ),
        (
            "sizeof dma_heap_allocation_data",
            size_of::<dma_heap::AllocationData>() as u64,
        ),
        (
            "offsetof dma_heap_allocation_data.len",
            offset_of!(dma_heap::AllocationData, len) as u64,
        ),
        (
            "offsetof dma_heap_allocation_data.fd",
            offset_of!(dma_heap::AllocationData, fd) as u64,
        ),
        (
            "offsetof dma_heap_allocation_data.fd_flags",
            offset_of!(dma_heap::AllocationData, fd_flags) as u64,
        ),
        (
            "offsetof dma_heap_allocation_data.heap_flags",
            offset_of!(dma_heap::AllocationData, heap_flags) as u64,
        ),
        ("DMA_BUF_IOCTL_SYNC", request(dma_buf::DMA_BUF_IOCTL_SYNC)),
        ("sizeof dma_buf_sync", size_of::<dma_buf::SyncArgs>() as u64),
        ("DMA_BUF_SYNC_READ", dma_buf::SYNC_READ),
        ("DMA_BUF_SYNC_WRITE", dma_buf::SYNC_WRITE),
        ("DMA_BUF_SYNC_RW", dma_buf::SYNC_RW),
        ("DMA_BUF_SYNC_START", dma_buf::SYNC_START),
        ("DMA_BUF_SYNC_END", dma_buf::SYNC_END),
        ("DMA_BUF_SET_NAME_B", request(dma_buf::DMA_BUF_SET_NAME_B)),
        ("DMA_BUF_NAME_LEN", dma_buf::NAME_LEN as u64),
        ("UDMABUF_CREATE", request(udmabuf::UDMABUF_CREATE)),
        ("UDMABUF_FLAGS_CLOEXEC", u64::from(udmabuf::FLAGS_CLOEXEC)),
        (
            "sizeof udmabuf_create",
            size_of::<udmabuf::CreateArgs>() as u64,
        ),
        (
            "offsetof udmabuf_create.memfd",
            offset_of!(udmabuf::CreateArgs, memfd) as u64,
        ),
        (
            "offsetof udmabuf_create.flags",
            offset_of!(udmabuf::CreateArgs, flags) as u64,
        ),
        (
            "offsetof udmabuf_create.offset",
            offset_of!(udmabuf::CreateArgs, offset) as u64,
        ),
        (
            "offsetof udmabuf_create.size",
            offset_of!(udmabuf::CreateArgs, size) as u64,
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
        ("sizeof statx", size_of::<libc::statx>() as u64),
        (
            "offsetof statx.stx_mask",
            offset_of!(libc::statx, stx_mask) as u64,
        ),
        (
            "offsetof statx.stx_mode",
            offset_of!(libc::statx, stx_mode) as u64,
        ),
        (
            "offsetof statx.stx_size",
            offset_of!(libc::statx, stx_size) as u64,
        ),
        (
            "offsetof statx.stx_dio_mem_align",
            offset_of!(libc::statx, stx_dio_mem_align) as u64,
        ),
        (
            "offsetof statx.stx_dio_offset_align",
            offset_of!(libc::statx, stx_dio_offset_align) as u64,
        ),
        ("RWF_DONTCACHE", int(file::RWF_DONTCACHE)),
    ]
}

#[test]
fn ioctl_numbers_flags_and_layouts_match_the_kernel_headers() {
    let headers = header_values();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (name, value) in ours() {
        let Some(&expected) = headers.get(name) else {
            // Only RWF_DONTCACHE may be missing: headers before Linux 6.14 lack it (the
            // file module's test pins it against the libc crate instead).
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
    assert!(checked >= ours().len() - 1);
}

#[test]
fn a_wrong_number_would_be_caught() {
    // The comparison above is against a real program's output, not against itself.
    let headers = header_values();
    assert_eq!(headers.get("DMA_HEAP_IOCTL_ALLOC"), Some(&0xc018_4800));
    assert_eq!(headers.get("DMA_BUF_IOCTL_SYNC"), Some(&0x4008_6200));
    assert_eq!(headers.get("UDMABUF_CREATE"), Some(&0x4018_7542));
}
