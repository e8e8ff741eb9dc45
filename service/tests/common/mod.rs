//! What both service test binaries share: the `ILoadCallback` that records what it is told.

use std::os::fd::OwnedFd;
use std::sync::{mpsc, Mutex};

use dmaload_aidl::aidl as idl;
use dmaload_aidl::ILoadCallback;
use rsbinder::Strong;

/// One callback, as the test sees it.
pub enum Event {
    Progress(i64, i64),
    /// The buffer (a duplicate of the fd the result carried) and its id.
    Complete(Option<OwnedFd>, i64),
    Error(i32, String),
}

struct Recorder(Mutex<mpsc::Sender<Event>>);

impl Recorder {
    fn send(&self, event: Event) {
        let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).send(event);
    }
}

impl rsbinder::Interface for Recorder {}

impl ILoadCallback::ILoadCallback for Recorder {
    fn onProgress(&self, done: i64, total: i64) -> rsbinder::BinderResult<()> {
        self.send(Event::Progress(done, total));
        Ok(())
    }
    fn onComplete(&self, result: &idl::LoadResult::LoadResult) -> rsbinder::BinderResult<()> {
        let fd = result
            .buffer
            .as_ref()
            .and_then(|p| p.as_ref().try_clone().ok());
        self.send(Event::Complete(fd, result.bufferId));
        Ok(())
    }
    fn onError(&self, code: i32, message: &str) -> rsbinder::BinderResult<()> {
        self.send(Event::Error(code, message.into()));
        Ok(())
    }
}

/// A callback binder and the events it receives, in order.
pub fn recorder() -> (
    Strong<dyn ILoadCallback::ILoadCallback>,
    mpsc::Receiver<Event>,
) {
    let (tx, rx) = mpsc::channel();
    (
        ILoadCallback::BnLoadCallback::new_binder(Recorder(Mutex::new(tx))),
        rx,
    )
}
