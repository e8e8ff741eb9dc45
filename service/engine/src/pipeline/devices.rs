//! The allocator devices (`/dev/dma_heap/<name>`, `/dev/udmabuf`), opened once per engine
//! and kept, as libdmabufheap keeps its heap descriptors: a load does not pay for opening
//! them. Those present when the engine starts are opened then, so the service's open
//! descriptors do not change with its first loads. A device that went away and came back is
//! opened afresh when a call on the kept descriptor fails.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{load_err, LoadError};
use crate::limits::EngineConfig;
use crate::stats::Backend;
use dmaload_abi::dma_heap::{list_heaps, DmaHeap};
use dmaload_abi::udmabuf::Udmabuf;

#[derive(Debug)]
pub(crate) struct Devices {
    heap_dir: PathBuf,
    udmabuf_path: PathBuf,
    heaps: Mutex<HashMap<String, Arc<DmaHeap>>>,
    udmabuf: Mutex<Option<Arc<Udmabuf>>>,
}

impl Devices {
    /// Opens the allowed heaps and udmabuf present now; the rest on first use.
    pub(crate) fn open(config: &EngineConfig) -> Devices {
        let devices = Devices {
            heap_dir: config.dma_heap_dir.clone(),
            udmabuf_path: config.udmabuf_device.clone(),
            heaps: Mutex::default(),
            udmabuf: Mutex::default(),
        };
        for name in list_heaps(&config.dma_heap_dir) {
            if super::allowed(config, &Backend::Heap(name.clone())) {
                let _ = devices.heap(&name);
            }
        }
        if config.udmabuf_device.exists() && super::allowed(config, &Backend::Udmabuf) {
            let _ = devices.udmabuf();
        }
        devices
    }

    fn heaps(&self) -> MutexGuard<'_, HashMap<String, Arc<DmaHeap>>> {
        self.heaps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kept_udmabuf(&self) -> MutexGuard<'_, Option<Arc<Udmabuf>>> {
        self.udmabuf.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Heap `name`, kept open.
    pub(crate) fn heap(&self, name: &str) -> Result<Arc<DmaHeap>, LoadError> {
        if let Some(heap) = self.heaps().get(name) {
            return Ok(Arc::clone(heap));
        }
        let heap = DmaHeap::open(&self.heap_dir, name)
            .map(Arc::new)
            .map_err(|e| load_err!(UnknownBackend, "cannot open dma-heap '{name}': {e}"))?;
        self.heaps().insert(name.to_string(), Arc::clone(&heap));
        Ok(heap)
    }

    /// Allocates `size` bytes from heap `name`; once more through a fresh descriptor when the
    /// kept one no longer names the device at its path.
    pub(crate) fn allocate(&self, name: &str, size: u64) -> Result<OwnedFd, LoadError> {
        let heap = self.heap(name)?;
        let err = match heap.allocate(size) {
            Ok(fd) => return Ok(fd),
            Err(e) => e,
        };
        let heap = if heap.is_current() {
            heap
        } else {
            self.heaps().remove(name);
            let fresh = self.heap(name)?;
            match fresh.allocate(size) {
                Ok(fd) => return Ok(fd),
                Err(e) => return Err(refused(&fresh, size, e)),
            }
        };
        Err(refused(&heap, size, err))
    }

    fn udmabuf(&self) -> Result<Arc<Udmabuf>, LoadError> {
        if let Some(device) = &*self.kept_udmabuf() {
            return Ok(Arc::clone(device));
        }
        let device = Udmabuf::open(&self.udmabuf_path)
            .map(Arc::new)
            .map_err(|e| load_err!(UnknownBackend, "cannot open udmabuf: {e}"))?;
        *self.kept_udmabuf() = Some(Arc::clone(&device));
        Ok(device)
    }

    /// Wraps `size` bytes of `memfd` into a dma-buf (`UDMABUF_CREATE`); once more through a
    /// fresh descriptor when the kept one no longer names the device.
    pub(crate) fn wrap(&self, memfd: BorrowedFd<'_>, size: u64) -> Result<OwnedFd, LoadError> {
        let device = self.udmabuf()?;
        let mut result = device.create(memfd, size);
        if result.is_err() && !device.is_current() {
            *self.kept_udmabuf() = None;
            result = self.udmabuf()?.create(memfd, size);
        }
        result.map_err(|e| load_err!(NoMemory, "UDMABUF_CREATE of {size} bytes failed: {e}"))
    }
}

fn refused(heap: &DmaHeap, size: u64, err: std::io::Error) -> LoadError {
    load_err!(
        NoMemory,
        "{} refused {size} bytes ({err}); free memory and retry",
        heap.path().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn heaps_are_opened_once_and_afresh_when_their_node_changed() {
        let dir = std::env::temp_dir().join(format!("dmaload-devices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // Plain files stand in for heap nodes: opening works, DMA_HEAP_IOCTL_ALLOC does not.
        std::fs::write(dir.join("fake"), b"").expect("node");
        let mut config = EngineConfig::from_system();
        config.dma_heap_dir = dir.clone();
        config.udmabuf_device = dir.join("no-udmabuf");
        let devices = Devices::open(&config);
        assert_eq!(
            devices.heaps().len(),
            1,
            "present heaps are opened up front"
        );
        let kept = devices.heap("fake").expect("heap");
        assert!(Arc::ptr_eq(&kept, &devices.heap("fake").expect("heap")));
        let err = devices.allocate("fake", 4096).expect_err("not a heap");
        assert_eq!(err.code, ErrorCode::NoMemory, "{err}");
        assert!(Arc::ptr_eq(&kept, &devices.heap("fake").expect("heap")));
        // The node was replaced: the failing call opens it afresh.
        std::fs::remove_file(dir.join("fake")).expect("remove");
        std::fs::write(dir.join("fake"), b"").expect("replace");
        devices.allocate("fake", 4096).expect_err("not a heap");
        let fresh = devices.heap("fake").expect("heap");
        assert!(!Arc::ptr_eq(&kept, &fresh) && fresh.is_current());
        let err = devices.allocate("gone", 4096).expect_err("no such heap");
        assert_eq!(err.code, ErrorCode::UnknownBackend, "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
