//! The binder stack under the client: AOSP libbinder_rs (cargo feature `android`, which the
//! Soong build sets) or rsbinder (every other build). Only this module names either stack;
//! the loader, the C API and the VTS use the stack-neutral items below.
//!
//! What differs (see also `service/src/binder_stack.rs`): how the service is found (the
//! service manager on both, plus RPC sockets on Linux hosts), the names of status and
//! exception codes, how a `Bn` object is made, death notifications, and parcel bytes.

pub use imp::*;

/// How a binder call failed, without the stack's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// A `ServiceSpecificException`: the service's stable code and its message.
    ServiceSpecific { code: i32, message: String },
    /// The transaction itself failed (`DEAD_OBJECT` when the service died, ...).
    Transport(StatusCode),
    /// Any other binder exception, as the stack describes it.
    Exception(String),
}

/// A binder status code as a positive errno, for the C API's negative-errno returns.
pub fn transport_errno(code: StatusCode) -> i32 {
    if code == DEAD_OBJECT {
        return libc::EPIPE;
    }
    if code == NAME_NOT_FOUND {
        return libc::ENOENT;
    }
    if code == PERMISSION_DENIED {
        return libc::EACCES;
    }
    let raw = status_code_value(code);
    // Most codes are negative errnos on both stacks; the rest (UNKNOWN_ERROR,
    // FAILED_TRANSACTION, ...) sit near i32::MIN and mean "the protocol broke".
    if raw < 0 && raw > -4096 {
        -raw
    } else {
        libc::EPROTO
    }
}

/// The message of a service-specific status from libbinder's description of it,
/// `Status(-8, EX_SERVICE_SPECIFIC): '<code>: <message>'` (libbinder_rs exposes no getter for
/// the message alone). Anything else is returned whole.
pub fn message_from_description(description: &str, code: i32) -> String {
    let quoted = description
        .split_once("): '")
        .map(|(_, rest)| rest.strip_suffix('\'').unwrap_or(rest));
    let Some(quoted) = quoted else {
        return description.to_string();
    };
    let prefix = format!("{code}: ");
    quoted.strip_prefix(&prefix).unwrap_or(quoted).to_string()
}

/// Outgoing RPC connections per connection: concurrent calls (a long synchronous load and a
/// cancel, say) each need their own.
pub const RPC_OUTGOING_CONNECTIONS: u32 = 4;
/// Incoming RPC connections: the service's callbacks (progress, completion) arrive on them.
pub const RPC_INCOMING_CONNECTIONS: u32 = 1;

#[cfg(not(feature = "android"))]
mod imp {
    use std::path::Path;
    use std::sync::Arc;

    use super::{CallError, RPC_INCOMING_CONNECTIONS, RPC_OUTGOING_CONNECTIONS};

    pub use dmaload_aidl::aidl as idl;
    pub use rsbinder::{
        BinderResult, Deserialize, Interface, ParcelFileDescriptor, Serialize, Status, StatusCode,
        Strong,
    };

    use idl::IDmaLoader::IDmaLoader;
    use idl::ILoadCallback::ILoadCallback;

    pub const DEAD_OBJECT: StatusCode = StatusCode::DeadObject;
    pub const FAILED_TRANSACTION: StatusCode = StatusCode::FailedTransaction;
    pub const NAME_NOT_FOUND: StatusCode = StatusCode::NameNotFound;
    pub const PERMISSION_DENIED: StatusCode = StatusCode::PermissionDenied;

    /// Linux hosts reach a private dmaloadd over RPC binder on a Unix socket.
    pub const SOCKETS_SUPPORTED: bool = true;

    pub(super) fn status_code_value(code: StatusCode) -> i32 {
        i32::from(code)
    }

    pub fn call_error(status: &Status) -> CallError {
        if status.exception_code() == rsbinder::ExceptionCode::ServiceSpecific {
            return CallError::ServiceSpecific {
                code: status.service_specific_error(),
                message: status.message().unwrap_or_default().to_string(),
            };
        }
        let transport = status.transaction_error();
        if transport != StatusCode::Ok {
            return CallError::Transport(transport);
        }
        CallError::Exception(status.to_string())
    }

    /// The service registered as `instance` with the kernel binder service manager, or
    /// `None` when nothing is registered (no waiting).
    pub fn check_service(instance: &str) -> Result<Option<Strong<dyn IDmaLoader>>, StatusCode> {
        rsbinder::Client::open(rsbinder::Uri::kernel())?.try_get::<dyn IDmaLoader>(instance)
    }

    /// An RPC session to a private dmaloadd; closing it ends its connections and threads.
    pub struct Session(rsbinder::rpc::RpcSession);

    impl Session {
        pub fn close(&self) {
            self.0.close_session();
        }
    }

    /// The service answering RPC binder on the Unix socket `path`.
    pub fn connect_socket(
        path: &Path,
        instance: &str,
    ) -> Result<(Strong<dyn IDmaLoader>, Session), StatusCode> {
        use rsbinder::entry::{WireProfile, WireVersion};
        let uri = rsbinder::Uri::new(rsbinder::Endpoint::unix(path))
            .with_wire(WireProfile::Android13Plus(WireVersion::MAX));
        let client = rsbinder::Client::open_with(uri, |o, _| {
            o.fd_mode = Some(rsbinder::rpc::FileDescriptorTransportMode::Unix);
            o.outgoing_connections = Some(RPC_OUTGOING_CONNECTIONS);
            o.incoming_connections = Some(RPC_INCOMING_CONNECTIONS);
        })?;
        let session = Session(
            client
                .session()
                .cloned()
                .ok_or(StatusCode::InvalidOperation)?,
        );
        match client.get::<dyn IDmaLoader>(instance) {
            Ok(service) => Ok((service, session)),
            Err(code) => {
                session.close();
                Err(code)
            }
        }
    }

    pub fn new_load_callback<T: ILoadCallback + 'static>(callback: T) -> Strong<dyn ILoadCallback> {
        idl::ILoadCallback::BnLoadCallback::new_binder(callback)
    }

    struct Recipient(Box<dyn Fn() + Send + Sync>);

    impl rsbinder::DeathRecipient for Recipient {
        fn binder_died(&self, _who: &rsbinder::WIBinder) {
            (self.0)();
        }
    }

    /// A death notification; dropping it ends the watch.
    pub struct DeathLink(#[allow(dead_code)] Arc<Recipient>);

    /// Calls `on_death` when the process serving `service` dies (where the transport
    /// notices: kernel binder always, RPC when the session sees the connection drop).
    pub fn link_to_death(
        service: &Strong<dyn IDmaLoader>,
        on_death: impl Fn() + Send + Sync + 'static,
    ) -> Result<DeathLink, StatusCode> {
        let recipient = Arc::new(Recipient(Box::new(on_death)));
        service.as_binder().link_to_death_arc(&recipient)?;
        Ok(DeathLink(recipient))
    }

    /// The service's `dumpsys` entry (`DUMP_TRANSACTION`): its text for `args`, written to
    /// `out` before this returns. Kernel binder only (rsbinder's RPC proxies have none).
    pub fn dump_to(
        service: &Strong<dyn IDmaLoader>,
        out: std::os::fd::OwnedFd,
        args: &[String],
    ) -> Result<(), StatusCode> {
        let binder = service.as_binder();
        let proxy = binder.as_proxy().ok_or(StatusCode::InvalidOperation)?;
        proxy.dump(out, args)
    }

    /// The parcel bytes of `value` (a value without fds or binders).
    pub fn to_parcel_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StatusCode> {
        rsbinder::to_bytes(value)
    }

    /// Decodes untrusted parcel bytes; an error for anything malformed, never a panic.
    pub fn from_parcel_bytes<T: Deserialize>(bytes: &[u8]) -> Result<T, StatusCode> {
        rsbinder::from_bytes(bytes)
    }
}

#[cfg(feature = "android")]
mod imp {
    use std::path::Path;
    use std::sync::Once;

    use super::CallError;

    use binder::binder_impl::Parcel;
    pub use binder::binder_impl::{Deserialize, Serialize};
    pub use binder::{Interface, ParcelFileDescriptor, Status, StatusCode, Strong};
    pub use dmaload_aidl::aidl::vendor::dmaload as idl;
    pub type BinderResult<T> = binder::Result<T>;

    use idl::IDmaLoader::IDmaLoader;
    use idl::ILoadCallback::ILoadCallback;

    pub const DEAD_OBJECT: StatusCode = StatusCode::DEAD_OBJECT;
    pub const FAILED_TRANSACTION: StatusCode = StatusCode::FAILED_TRANSACTION;
    pub const NAME_NOT_FOUND: StatusCode = StatusCode::NAME_NOT_FOUND;
    pub const PERMISSION_DENIED: StatusCode = StatusCode::PERMISSION_DENIED;

    /// On Android the service is reached through the service manager only.
    pub const SOCKETS_SUPPORTED: bool = false;

    pub(super) fn status_code_value(code: StatusCode) -> i32 {
        code as i32
    }

    pub fn call_error(status: &Status) -> CallError {
        if status.exception_code() == binder::ExceptionCode::SERVICE_SPECIFIC {
            let code = status.service_specific_error();
            return CallError::ServiceSpecific {
                code,
                message: super::message_from_description(&status.get_description(), code),
            };
        }
        let transport = status.transaction_error();
        if transport != StatusCode::OK {
            return CallError::Transport(transport);
        }
        CallError::Exception(status.get_description())
    }

    /// Asynchronous loads report through callbacks and the service's death through a
    /// notification: both arrive on binder threads, which a process must start once. (An
    /// app's runtime has usually started them already; starting again changes nothing.)
    fn start_thread_pool() {
        static STARTED: Once = Once::new();
        STARTED.call_once(binder::ProcessState::start_thread_pool);
    }

    /// The service registered as `instance` with the service manager, or `None` when it is
    /// not registered (no waiting: `check_interface`, not `wait_for_interface`, which would
    /// hang a caller while a declared service is down). `check_interface` is libbinder_rs as
    /// of Android 15.
    pub fn check_service(instance: &str) -> Result<Option<Strong<dyn IDmaLoader>>, StatusCode> {
        start_thread_pool();
        match binder::check_interface::<dyn IDmaLoader>(instance) {
            Ok(service) => Ok(Some(service)),
            Err(StatusCode::NAME_NOT_FOUND) => Ok(None),
            Err(code) => Err(code),
        }
    }

    /// There are no RPC sessions on Android; this type has no values.
    pub enum Session {}

    impl Session {
        pub fn close(&self) {
            match *self {}
        }
    }

    pub fn connect_socket(
        _path: &Path,
        _instance: &str,
    ) -> Result<(Strong<dyn IDmaLoader>, Session), StatusCode> {
        Err(StatusCode::INVALID_OPERATION)
    }

    pub fn new_load_callback<T: ILoadCallback + 'static>(callback: T) -> Strong<dyn ILoadCallback> {
        idl::ILoadCallback::BnLoadCallback::new_binder(callback, binder::BinderFeatures::default())
    }

    /// A death notification; dropping it ends the watch (libbinder holds the recipient
    /// weakly).
    pub struct DeathLink(#[allow(dead_code)] binder::DeathRecipient);

    /// Calls `on_death` when the process serving `service` dies.
    pub fn link_to_death(
        service: &Strong<dyn IDmaLoader>,
        on_death: impl Fn() + Send + Sync + 'static,
    ) -> Result<DeathLink, StatusCode> {
        use binder::IBinder as _;
        start_thread_pool();
        let mut recipient = binder::DeathRecipient::new(on_death);
        service.as_binder().link_to_death(&mut recipient)?;
        Ok(DeathLink(recipient))
    }

    /// The service's `dumpsys` entry (`DUMP_TRANSACTION`): its text for `args`, written to
    /// `out` before this returns.
    pub fn dump_to(
        service: &Strong<dyn IDmaLoader>,
        out: std::os::fd::OwnedFd,
        args: &[String],
    ) -> Result<(), StatusCode> {
        use binder::binder_impl::IBinderInternal as _;
        let mut binder = service.as_binder();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        binder.dump(&out, &args)
    }

    /// The parcel bytes of `value` (a value without fds or binders: libbinder refuses to read
    /// those back as plain data). Read word by word: libbinder_rs of Android 15 has no
    /// `Parcel::marshal`.
    pub fn to_parcel_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StatusCode> {
        let mut parcel = Parcel::new();
        parcel.write(value)?;
        let size = parcel.get_data_size();
        rewind(&parcel)?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while parcel.get_data_position() < size {
            bytes.extend_from_slice(&parcel.read::<i32>()?.to_ne_bytes());
        }
        Ok(bytes)
    }

    /// Decodes untrusted parcel bytes; an error for anything malformed or left over, never a
    /// panic. Parcel data is made of 4-byte words: a ragged tail is padded with zeros.
    pub fn from_parcel_bytes<T: Deserialize>(bytes: &[u8]) -> Result<T, StatusCode> {
        let mut parcel = Parcel::new();
        for chunk in bytes.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            parcel.write(&i32::from_ne_bytes(word))?;
        }
        rewind(&parcel)?;
        let value = parcel.read::<T>()?;
        if parcel.get_data_position() < parcel.get_data_size() {
            return Err(StatusCode::BAD_VALUE);
        }
        Ok(value)
    }

    fn rewind(parcel: &Parcel) -> Result<(), StatusCode> {
        // SAFETY: position 0 is the start of the parcel's data, in bounds for any size.
        unsafe { parcel.set_data_position(0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_specific_message_comes_out_of_the_description() {
        assert_eq!(
            message_from_description("Status(-8, EX_SERVICE_SPECIFIC): '9: release buffers'", 9),
            "release buffers"
        );
        // A message that itself holds quotes and the separator.
        assert_eq!(
            message_from_description("Status(-8, EX_SERVICE_SPECIFIC): '3: a ': 'b''", 3),
            "a ': 'b'"
        );
        // No message: libbinder prints the code alone.
        assert_eq!(
            message_from_description("Status(-8, EX_SERVICE_SPECIFIC): '12: '", 12),
            ""
        );
        // Not the expected shape: the whole text, nothing lost.
        assert_eq!(message_from_description("odd", 1), "odd");
    }

    #[test]
    fn transport_codes_become_errnos() {
        assert_eq!(transport_errno(DEAD_OBJECT), libc::EPIPE);
        assert_eq!(transport_errno(NAME_NOT_FOUND), libc::ENOENT);
        assert_eq!(transport_errno(PERMISSION_DENIED), libc::EACCES);
        assert_eq!(transport_errno(FAILED_TRANSACTION), libc::EPROTO);
    }
}
