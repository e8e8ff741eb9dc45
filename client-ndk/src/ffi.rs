//! The C API of libdmaload (`include/dmaload.h`).
//!
//! Every exported function converts its raw arguments at the top (null checks, C strings),
//! calls the safe API, and turns the outcome into the header's `int` convention. Panics never
//! cross the boundary: each entry point runs under `catch_unwind` and reports an internal
//! error instead. The detailed message of a failure is kept per thread for
//! `ADmaLoad_lastErrorMessage`.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use crate::buffer::{HeapInfo, LoadedBuffer};
use crate::endpoint::Endpoint;
use crate::error::{describe_code, Error, Result};
use crate::loader::Loader;
use crate::request::{IoMode, LoadRequest, MAX_NAME_BYTES};
use crate::task::{LoadEvents, PendingLoad};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

fn invalid(what: &str) -> Error {
    Error::os(libc::EINVAL, what.to_string())
}

/// Runs one entry point: catches panics, records the message of a failure, returns the code.
fn status(f: impl FnOnce() -> Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(err)) => {
            set_last_error(&err.to_string());
            err.c_code()
        }
        Err(_) => {
            set_last_error("libdmaload: internal error (panic); please report it");
            crate::error::ErrorCode::Internal.code()
        }
    }
}

/// Runs a getter that cannot fail: a panic yields `fallback`.
fn getter<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Reads an optional C string.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string valid for the call.
unsafe fn opt_str<'a>(ptr: *const c_char, what: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string (header contract).
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str()
        .map(Some)
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// Turns a handle pointer into a reference, or `-EINVAL`.
///
/// # Safety
/// `ptr` is null or a live handle of type `T` created by this library.
unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: non-null handles are live objects this library boxed (header contract).
    unsafe { ptr.as_ref() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// # Safety
/// As [`handle`], and no other reference to the object is in use (header contract for
/// building requests and taking results).
unsafe fn handle_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T> {
    // SAFETY: see the function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// Stores a new boxed handle in an out-parameter.
///
/// # Safety
/// `out` is null or valid for one pointer write.
unsafe fn put<T>(out: *mut *mut T, value: T) -> Result<()> {
    if out.is_null() {
        return Err(invalid("the out-parameter is NULL"));
    }
    // SAFETY: checked non-null; valid for writes per the header contract.
    unsafe { out.write(Box::into_raw(Box::new(value))) };
    Ok(())
}

/// Frees a handle created by [`put`].
///
/// # Safety
/// `ptr` is null or a handle from `put::<T>` not yet released.
unsafe fn release<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: per the contract it came from Box::into_raw and is released once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(ptr) })));
    }
}

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

// ----------------------------------------------------------------------------------------
// Handle types
// ----------------------------------------------------------------------------------------

/// `ADmaLoader`.
pub struct ADmaLoader {
    loader: Loader,
}

/// `ADmaLoadRequest`.
pub struct ADmaLoadRequest {
    request: LoadRequest,
}

/// `ADmaLoadResult`: a buffer plus the C strings handed out about it.
pub struct ADmaLoadResult {
    buffer: LoadedBuffer,
    backend: CString,
    name: CString,
    fallbacks: Vec<CString>,
}

impl ADmaLoadResult {
    fn new(buffer: LoadedBuffer) -> ADmaLoadResult {
        ADmaLoadResult {
            backend: c_string(buffer.backend()),
            name: c_string(buffer.name()),
            fallbacks: buffer
                .stats()
                .fallbacks
                .iter()
                .map(|f| c_string(f))
                .collect(),
            buffer,
        }
    }
}

/// `ADmaLoadHeapList`.
pub struct ADmaLoadHeapList {
    heaps: Vec<(HeapInfo, CString, CString)>,
}

/// `ADmaLoadTask`.
pub struct ADmaLoadTask {
    pending: PendingLoad,
}

/// `ADmaLoadStats` (layout fixed by the header).
#[repr(C)]
pub struct ADmaLoadStats {
    pub total_ns: u64,
    pub alloc_ns: u64,
    pub first_gather_ns: u64,
    pub io_ns: u64,
    pub copy_ns: u64,
    pub direct_bytes: u64,
    pub buffered_bytes: u64,
    pub bounced_bytes: u64,
}

/// `ADmaLoadCallbacks` (layout fixed by the header).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ADmaLoadCallbacks {
    pub on_progress: Option<extern "C" fn(user_data: *mut c_void, loaded: u64, total: u64)>,
    pub on_complete: Option<
        extern "C" fn(
            user_data: *mut c_void,
            status: c_int,
            message: *const c_char,
            result: *mut ADmaLoadResult,
        ),
    >,
}

/// The app's callbacks and their `userData`, as load events.
struct CallbackEvents {
    callbacks: ADmaLoadCallbacks,
    user_data: *mut c_void,
}

// SAFETY: the header requires the callbacks and `userData` to be usable from the library's
// callback thread; the library never dereferences `user_data` itself.
unsafe impl Send for CallbackEvents {}
// SAFETY: as above; callbacks of one task are serialized by the task (never concurrent).
unsafe impl Sync for CallbackEvents {}

impl LoadEvents for CallbackEvents {
    fn progress(&self, loaded: u64, total: u64) {
        if let Some(on_progress) = self.callbacks.on_progress {
            on_progress(self.user_data, loaded, total);
        }
    }

    fn finished(&self, outcome: Result<LoadedBuffer>) -> Option<LoadedBuffer> {
        let Some(on_complete) = self.callbacks.on_complete else {
            return outcome.ok();
        };
        match outcome {
            Ok(buffer) => {
                let result = Box::into_raw(Box::new(ADmaLoadResult::new(buffer)));
                // The callback owns `result` from here on.
                on_complete(self.user_data, 0, c"".as_ptr(), result);
            }
            Err(err) => {
                let message = c_string(&err.to_string());
                on_complete(
                    self.user_data,
                    err.c_code(),
                    message.as_ptr(),
                    std::ptr::null_mut(),
                );
            }
        }
        None
    }
}

// ----------------------------------------------------------------------------------------
// Errors
// ----------------------------------------------------------------------------------------

/// Static messages for every status, built once.
fn static_message(status: c_int) -> &'static CStr {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static MESSAGES: OnceLock<Mutex<HashMap<c_int, &'static CStr>>> = OnceLock::new();
    let map = MESSAGES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    // The set of statuses is small (codes and errnos), so leaking one string per distinct
    // status keeps the "lives forever" promise at a bounded cost.
    let unknown = status != 0
        && crate::error::ErrorCode::from_code(status).is_none()
        && !(-4096..0).contains(&status);
    let key = if unknown { c_int::MAX } else { status };
    map.entry(key).or_insert_with(|| {
        let text = if unknown {
            "unknown dmaload status".to_string()
        } else {
            describe_code(status)
        };
        Box::leak(c_string(&text).into_boxed_c_str())
    })
}

#[no_mangle]
pub extern "C" fn ADmaLoad_errorString(status: c_int) -> *const c_char {
    getter(c"libdmaload: internal error".as_ptr(), || {
        static_message(status).as_ptr()
    })
}

#[no_mangle]
pub extern "C" fn ADmaLoad_lastErrorMessage() -> *const c_char {
    // The pointer stays valid until this thread's next failing call replaces the string.
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

// ----------------------------------------------------------------------------------------
// Loader
// ----------------------------------------------------------------------------------------

/// # Safety
/// `endpoint` is null or a NUL-terminated string; `out_loader` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_create(
    endpoint: *const c_char,
    out_loader: *mut *mut ADmaLoader,
) -> c_int {
    status(|| {
        if out_loader.is_null() {
            return Err(invalid("outLoader is NULL"));
        }
        // SAFETY: `endpoint` is null or a NUL-terminated string (dmaload.h contract).
        let endpoint = unsafe { opt_str(endpoint, "endpoint") }?
            .map(Endpoint::parse)
            .transpose()?;
        let loader = Loader::connect(endpoint.as_ref())?;
        // SAFETY: `out_loader` is null or valid for one pointer write (dmaload.h contract).
        unsafe { put(out_loader, ADmaLoader { loader }) }
    })
}

/// # Safety
/// `loader` is null or a loader from `ADmaLoader_create`, released once.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_release(loader: *mut ADmaLoader) {
    // SAFETY: `loader` is null or an unreleased handle of this type (dmaload.h contract).
    unsafe { release(loader) }
}

/// # Safety
/// `loader` is a live loader; `out_list` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_getHeaps(
    loader: *const ADmaLoader,
    out_list: *mut *mut ADmaLoadHeapList,
) -> c_int {
    status(|| {
        // SAFETY: `loader` is null or a live handle (dmaload.h contract).
        let loader = unsafe { handle(loader, "loader") }?;
        let heaps = loader.loader.heaps()?;
        let heaps = heaps
            .into_iter()
            .map(|h| {
                let name = c_string(&h.name);
                let detail = c_string(&h.detail);
                (h, name, detail)
            })
            .collect();
        // SAFETY: `out_list` is null or valid for one pointer write (dmaload.h contract).
        unsafe { put(out_list, ADmaLoadHeapList { heaps }) }
    })
}

/// # Safety
/// `list` is a live heap list.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_getCount(list: *const ADmaLoadHeapList) -> usize {
    getter(0, || {
        // SAFETY: `list` is null or live (dmaload.h contract).
        unsafe { handle(list, "list") }.map_or(0, |l| l.heaps.len())
    })
}

/// # Safety
/// `list` is a live heap list.
unsafe fn heap_entry<'a>(
    list: *const ADmaLoadHeapList,
    index: usize,
) -> Option<&'a (HeapInfo, CString, CString)> {
    // SAFETY: `list` is null or a live handle (dmaload.h contract).
    unsafe { handle(list, "list") }.ok()?.heaps.get(index)
}

/// # Safety
/// `list` is a live heap list.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_getName(
    list: *const ADmaLoadHeapList,
    index: usize,
) -> *const c_char {
    getter(std::ptr::null(), || {
        // SAFETY: `list` is null or live (dmaload.h contract).
        unsafe { heap_entry(list, index) }.map_or(std::ptr::null(), |h| h.1.as_ptr())
    })
}

/// # Safety
/// `list` is a live heap list.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_getDetail(
    list: *const ADmaLoadHeapList,
    index: usize,
) -> *const c_char {
    getter(std::ptr::null(), || {
        // SAFETY: `list` is null or live (dmaload.h contract).
        unsafe { heap_entry(list, index) }.map_or(std::ptr::null(), |h| h.2.as_ptr())
    })
}

/// # Safety
/// `list` is a live heap list.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_isAllowed(
    list: *const ADmaLoadHeapList,
    index: usize,
) -> bool {
    getter(false, || {
        // SAFETY: `list` is null or live (dmaload.h contract).
        unsafe { heap_entry(list, index) }.is_some_and(|h| h.0.allowed)
    })
}

/// # Safety
/// `list` is a live heap list.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_isDmaBuf(
    list: *const ADmaLoadHeapList,
    index: usize,
) -> bool {
    getter(false, || {
        // SAFETY: `list` is null or live (dmaload.h contract).
        unsafe { heap_entry(list, index) }.is_some_and(|h| h.0.dma_buf)
    })
}

/// # Safety
/// `list` is a live heap list.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_getMaxBufferSize(
    list: *const ADmaLoadHeapList,
    index: usize,
) -> u64 {
    getter(0, || {
        // SAFETY: `list` is null or live (dmaload.h contract).
        unsafe { heap_entry(list, index) }.map_or(0, |h| h.0.max_buffer_bytes)
    })
}

/// # Safety
/// `list` is null or a list from `ADmaLoader_getHeaps`, released once.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadHeapList_release(list: *mut ADmaLoadHeapList) {
    // SAFETY: `list` is null or an unreleased handle of this type (dmaload.h contract).
    unsafe { release(list) }
}

/// # Safety
/// `loader` is a live loader.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_releaseBuffer(
    loader: *const ADmaLoader,
    buffer_id: i64,
) -> c_int {
    status(|| {
        // SAFETY: `loader` is null or a live handle (dmaload.h contract).
        unsafe { handle(loader, "loader") }?
            .loader
            .release_buffer(buffer_id)
    })
}

// ----------------------------------------------------------------------------------------
// Requests
// ----------------------------------------------------------------------------------------

/// # Safety
/// `out_request` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_create(out_request: *mut *mut ADmaLoadRequest) -> c_int {
    // SAFETY: `out_request` is null or valid for one pointer write (dmaload.h contract).
    status(|| unsafe {
        put(
            out_request,
            ADmaLoadRequest {
                request: LoadRequest::new(),
            },
        )
    })
}

/// # Safety
/// `request` is null or a request from `ADmaLoadRequest_create`, released once.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_release(request: *mut ADmaLoadRequest) {
    // SAFETY: `request` is null or an unreleased handle of this type (dmaload.h contract).
    unsafe { release(request) }
}

/// # Safety
/// `request` is a live request not used by another thread.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_addSegment(
    request: *mut ADmaLoadRequest,
    fd: c_int,
    file_offset: u64,
    length: u64,
    buffer_offset: u64,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        let request = unsafe { handle_mut(request, "request") }?;
        if fd < 0 {
            return Err(invalid(&format!("segment fd {fd} is negative")));
        }
        // SAFETY: the fd is only borrowed for this call, during which the caller keeps it
        // open (header contract); it is duplicated before the call returns. A closed fd
        // makes the duplication fail with EBADF.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        request
            .request
            .add_fd(borrowed, file_offset, length, buffer_offset)
            .map(|_| ())
    })
}

/// # Safety
/// `request` is a live request not used by another thread; `path` a NUL-terminated string;
/// `out_direct` null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_addFile(
    request: *mut ADmaLoadRequest,
    path: *const c_char,
    file_offset: u64,
    length: u64,
    buffer_offset: u64,
    out_direct: *mut bool,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        let request = unsafe { handle_mut(request, "request") }?;
        // SAFETY: `path` is null or a NUL-terminated string (dmaload.h contract).
        let path = unsafe { opt_str(path, "path") }?.ok_or_else(|| invalid("path is NULL"))?;
        let direct =
            request
                .request
                .add_file(Path::new(path), file_offset, length, buffer_offset)?;
        if !out_direct.is_null() {
            // SAFETY: checked non-null; valid for a write per the header.
            unsafe { out_direct.write(direct) };
        }
        Ok(())
    })
}

/// # Safety
/// `request` is a live request not used by another thread; `heap` null or a C string.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_setHeap(
    request: *mut ADmaLoadRequest,
    heap: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        let request = unsafe { handle_mut(request, "request") }?;
        // SAFETY: `heap` is null or a NUL-terminated string (dmaload.h contract).
        let heap = unsafe { opt_str(heap, "heap") }?.filter(|h| *h != "auto");
        request.request.set_backend(heap);
        Ok(())
    })
}

/// # Safety
/// `request` is a live request not used by another thread.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_setGatherSize(
    request: *mut ADmaLoadRequest,
    gather_bytes: u64,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        unsafe { handle_mut(request, "request") }?
            .request
            .set_gather_size(gather_bytes);
        Ok(())
    })
}

/// # Safety
/// `request` is a live request not used by another thread.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_setIoMode(
    request: *mut ADmaLoadRequest,
    mode: c_int,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        let request = unsafe { handle_mut(request, "request") }?;
        let mode = IoMode::from_c(mode)
            .ok_or_else(|| invalid(&format!("I/O mode {mode} is not an ADmaLoadIoMode")))?;
        request.request.set_io_mode(mode);
        Ok(())
    })
}

/// # Safety
/// `request` is a live request not used by another thread; `name` a C string.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_setName(
    request: *mut ADmaLoadRequest,
    name: *const c_char,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        let request = unsafe { handle_mut(request, "request") }?;
        // SAFETY: `name` is null or a NUL-terminated string (dmaload.h contract).
        let name = unsafe { opt_str(name, "name") }?.ok_or_else(|| invalid("name is NULL"))?;
        request.request.set_name(name).map(|_| ())
    })
}

// ----------------------------------------------------------------------------------------
// Loads
// ----------------------------------------------------------------------------------------

/// # Safety
/// `loader` and `request` are live handles; `out_result` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_load(
    loader: *const ADmaLoader,
    request: *const ADmaLoadRequest,
    out_result: *mut *mut ADmaLoadResult,
) -> c_int {
    status(|| {
        // SAFETY: `loader` is null or a live handle (dmaload.h contract).
        let loader = unsafe { handle(loader, "loader") }?;
        // SAFETY: `request` is null or a live handle (dmaload.h contract).
        let request = unsafe { handle(request, "request") }?;
        if out_result.is_null() {
            return Err(invalid("outResult is NULL"));
        }
        let buffer = loader.loader.load(&request.request)?;
        // SAFETY: `out_result` is null or valid for one pointer write (dmaload.h contract).
        unsafe { put(out_result, ADmaLoadResult::new(buffer)) }
    })
}

/// # Safety
/// `loader` is a live loader; `path` a C string; `heap` null or a C string; `out_result`
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_loadFile(
    loader: *const ADmaLoader,
    path: *const c_char,
    heap: *const c_char,
    out_result: *mut *mut ADmaLoadResult,
) -> c_int {
    status(|| {
        // SAFETY: `loader` is null or a live handle (dmaload.h contract).
        let loader = unsafe { handle(loader, "loader") }?;
        // SAFETY: `path` is null or a NUL-terminated string (dmaload.h contract).
        let path = unsafe { opt_str(path, "path") }?.ok_or_else(|| invalid("path is NULL"))?;
        // SAFETY: `heap` is null or a NUL-terminated string (dmaload.h contract).
        let heap = unsafe { opt_str(heap, "heap") }?.filter(|h| *h != "auto");
        if out_result.is_null() {
            return Err(invalid("outResult is NULL"));
        }
        let mut request = LoadRequest::new();
        request.add_file(Path::new(path), 0, 0, 0)?;
        request.set_backend(heap);
        // The file's name names the buffer, cut to the longest name the service takes.
        let mut name = Path::new(path).file_name().map_or_else(
            || "dmaload".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut end = name.len().min(MAX_NAME_BYTES);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        request.set_name(&name)?;
        let buffer = loader.loader.load(&request)?;
        // SAFETY: `out_result` is null or valid for one pointer write (dmaload.h contract).
        unsafe { put(out_result, ADmaLoadResult::new(buffer)) }
    })
}

/// # Safety
/// `loader` and `request` are live handles; `callbacks` null or a valid struct; `out_task`
/// valid for a write. `user_data` follows the header's contract.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoader_loadAsync(
    loader: *const ADmaLoader,
    request: *const ADmaLoadRequest,
    callbacks: *const ADmaLoadCallbacks,
    user_data: *mut c_void,
    out_task: *mut *mut ADmaLoadTask,
) -> c_int {
    status(|| {
        // SAFETY: `loader` is null or a live handle (dmaload.h contract).
        let loader = unsafe { handle(loader, "loader") }?;
        // SAFETY: `request` is null or a live handle (dmaload.h contract).
        let request = unsafe { handle(request, "request") }?;
        if out_task.is_null() {
            return Err(invalid("outTask is NULL"));
        }
        // SAFETY: null or a valid struct (header contract); copied here.
        let callbacks = unsafe { callbacks.as_ref() }
            .copied()
            .unwrap_or(ADmaLoadCallbacks {
                on_progress: None,
                on_complete: None,
            });
        let events = Arc::new(CallbackEvents {
            callbacks,
            user_data,
        });
        let pending = loader.loader.load_async(&request.request, events)?;
        // SAFETY: `out_task` is null or valid for one pointer write (dmaload.h contract).
        unsafe { put(out_task, ADmaLoadTask { pending }) }
    })
}

/// # Safety
/// `task` is a live task.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadTask_cancel(task: *const ADmaLoadTask) -> c_int {
    status(|| {
        // SAFETY: `task` is null or a live handle (dmaload.h contract).
        unsafe { handle(task, "task") }?.pending.cancel();
        Ok(())
    })
}

/// # Safety
/// `task` is a live task.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadTask_isDone(task: *const ADmaLoadTask) -> bool {
    getter(false, || {
        // SAFETY: `task` is null or live (dmaload.h contract).
        unsafe { handle(task, "task") }.is_ok_and(|t| t.pending.is_done())
    })
}

/// # Safety
/// `task` is a live task; `out_result` null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadTask_wait(
    task: *const ADmaLoadTask,
    out_result: *mut *mut ADmaLoadResult,
) -> c_int {
    status(|| {
        // SAFETY: `task` is null or a live handle (dmaload.h contract).
        let task = unsafe { handle(task, "task") }?;
        if !out_result.is_null() {
            // SAFETY: checked non-null; valid for a write per the header.
            unsafe { out_result.write(std::ptr::null_mut()) };
        }
        task.pending.wait()?;
        if !out_result.is_null() {
            if let Some(buffer) = task.pending.take_buffer() {
                // SAFETY: as above.
                unsafe { put(out_result, ADmaLoadResult::new(buffer)) }?;
            }
        }
        Ok(())
    })
}

/// # Safety
/// `task` is null or a task from `ADmaLoader_loadAsync`, released once.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadTask_release(task: *mut ADmaLoadTask) {
    if task.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: header contract: a live task from loadAsync, released once.
        let task = unsafe { Box::from_raw(task) };
        if !task.pending.is_done() && !task.pending.shared.in_own_callback() {
            task.pending.cancel();
            // The outcome is the app's business (onComplete); only wait for it to be over.
            let _ = task.pending.wait();
        }
    }));
}

// ----------------------------------------------------------------------------------------
// Results
// ----------------------------------------------------------------------------------------

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getFd(result: *const ADmaLoadResult) -> c_int {
    getter(-1, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }
            .ok()
            .and_then(|r| r.buffer.fd())
            .map_or(-1, |fd| fd.as_raw_fd())
    })
}

/// # Safety
/// `result` is a live result not used by another thread; `out_fd` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_takeFd(
    result: *mut ADmaLoadResult,
    out_fd: *mut c_int,
) -> c_int {
    status(|| {
        // SAFETY: `result` is null or a live handle used by this call alone (dmaload.h contract).
        let result = unsafe { handle_mut(result, "result") }?;
        if out_fd.is_null() {
            return Err(invalid("outFd is NULL"));
        }
        let fd = result
            .buffer
            .take_fd()
            .ok_or_else(|| Error::os(libc::EBADF, "the buffer fd was already taken"))?;
        // SAFETY: checked non-null; valid for a write per the header. Ownership passes to
        // the caller.
        unsafe { out_fd.write(fd.into_raw_fd()) };
        Ok(())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getSize(result: *const ADmaLoadResult) -> u64 {
    getter(0, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(0, |r| r.buffer.size())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getBufferId(result: *const ADmaLoadResult) -> i64 {
    getter(-1, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(-1, |r| r.buffer.buffer_id())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getBackend(result: *const ADmaLoadResult) -> *const c_char {
    getter(c"".as_ptr(), || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(c"".as_ptr(), |r| r.backend.as_ptr())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getName(result: *const ADmaLoadResult) -> *const c_char {
    getter(c"".as_ptr(), || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(c"".as_ptr(), |r| r.name.as_ptr())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getIoMode(result: *const ADmaLoadResult) -> c_int {
    getter(0, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(0, |r| r.buffer.io_mode().to_c())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_openedWithDirectIo(result: *const ADmaLoadResult) -> bool {
    getter(false, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.is_ok_and(|r| r.buffer.opened_direct())
    })
}

/// # Safety
/// `result` is a live result; `out_stats` valid for a write of `ADmaLoadStats`.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getStats(
    result: *const ADmaLoadResult,
    out_stats: *mut ADmaLoadStats,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `result` is null or a live handle (dmaload.h contract).
        let Ok(result) = (unsafe { handle(result, "result") }) else {
            return;
        };
        if out_stats.is_null() {
            return;
        }
        let s = result.buffer.stats();
        let stats = ADmaLoadStats {
            total_ns: s.total_ns,
            alloc_ns: s.alloc_ns,
            first_gather_ns: s.first_gather_ns,
            io_ns: s.io_ns,
            copy_ns: s.copy_ns,
            direct_bytes: s.direct_bytes,
            buffered_bytes: s.buffered_bytes,
            bounced_bytes: s.bounced_bytes,
        };
        // SAFETY: checked non-null; valid for a write per the header.
        unsafe { out_stats.write(stats) };
    }));
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getFallbackCount(result: *const ADmaLoadResult) -> usize {
    getter(0, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(0, |r| r.fallbacks.len())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getFallback(
    result: *const ADmaLoadResult,
    index: usize,
) -> *const c_char {
    getter(std::ptr::null(), || {
        // SAFETY: `result` is null or a live handle (dmaload.h contract).
        unsafe { handle(result, "result") }
            .ok()
            .and_then(|r| r.fallbacks.get(index))
            .map_or(std::ptr::null(), |f| f.as_ptr())
    })
}

/// # Safety
/// `result` is null or a result from this library, released once.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_release(result: *mut ADmaLoadResult) {
    // SAFETY: `result` is null or an unreleased handle of this type (dmaload.h contract).
    unsafe { release(result) }
}

// ----------------------------------------------------------------------------------------
// Version 2: warm reuse
// ----------------------------------------------------------------------------------------

/// # Safety
/// `request` is a live request not used by another thread.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadRequest_setShareable(
    request: *mut ADmaLoadRequest,
    shareable: bool,
) -> c_int {
    status(|| {
        // SAFETY: `request` is null or a live handle used by this call alone (dmaload.h contract).
        unsafe { handle_mut(request, "request") }?
            .request
            .set_shareable(shareable);
        Ok(())
    })
}

/// # Safety
/// `result` is a live result.
#[no_mangle]
pub unsafe extern "C" fn ADmaLoadResult_getReuse(result: *const ADmaLoadResult) -> c_int {
    getter(0, || {
        // SAFETY: `result` is null or live (dmaload.h contract).
        unsafe { handle(result, "result") }.map_or(0, |r| r.buffer.reuse().to_c())
    })
}
