/*
 * Copyright 2026 The dmaload Authors
 * SPDX-License-Identifier: Apache-2.0
 */

/**
 * @file dmaload.h
 * @brief libdmaload: load files into dma-bufs through the dmaload service.
 *
 * dmaload is a system service that reads a file (typically multi-GB ML model weights) into a
 * dma-buf with direct I/O, overlapping the buffer's allocation with the reads, and hands the
 * dma-buf out only once every byte is in. This library is the client side: it talks to the
 * service over binder and gives you a dma-buf file descriptor you can mmap, import into a
 * GPU/NPU driver, or pass on.
 *
 * Android: the shared library is `libdmaload.so` (Soong module `libdmaload`, a vendor
 * library listed in /vendor/etc/public.libraries.txt); apps declare
 * `<uses-native-library android:name="libdmaload.so" />`. Linux: link `-ldmaload` (the
 * `dmaload-client` cargo package builds `libdmaload.so` and `libdmaload.a`).
 *
 * ## Objects
 *
 * | handle            | what it is                              | create / release                           |
 * |-------------------|-----------------------------------------|--------------------------------------------|
 * | ADmaLoader        | a connection to the service             | ADmaLoader_create / ADmaLoader_release     |
 * | ADmaLoadRequest   | what to load (segments, heap, mode)     | ADmaLoadRequest_create / _release          |
 * | ADmaLoadResult    | a loaded buffer: its fd, size and stats | returned by loads / ADmaLoadResult_release |
 * | ADmaLoadTask      | an asynchronous load in flight          | ADmaLoader_loadAsync / ADmaLoadTask_release|
 * | ADmaLoadHeapList  | the buffer backends the service offers  | ADmaLoader_getHeaps / _release             |
 *
 * Every handle you receive is released by exactly one call of its `_release` function;
 * `_release(NULL)` does nothing. Handles are independent: two loaders in one process do not
 * share state. All functions are thread-safe: one ADmaLoader can serve many threads at once.
 * An ADmaLoadRequest may be used by one thread at a time while it is being built, and by any
 * number of loads at once afterwards (a load only reads it).
 *
 * ## Return values
 *
 * Functions that can fail return an `int`:
 *   - 0 (DMALOAD_OK) on success;
 *   - a positive DMALOAD_E_* code when the service refused or failed the request (stable
 *     numbers; see the table below);
 *   - a negative errno for failures on the caller's side: -EINVAL for a NULL handle or an
 *     invalid argument the library checks itself, -ENOENT / -EACCES when opening a path
 *     failed, -ECONNREFUSED / -ENOENT when the service cannot be reached, -EPIPE when the
 *     service died during the call.
 * ADmaLoad_errorString() turns any of these into a static message. The detailed message of
 * the last failed call on the calling thread (e.g. the errno of a failed read, the limit
 * that was hit) is returned by ADmaLoad_lastErrorMessage(). Out-parameters are written only
 * on success.
 *
 * ## File descriptors: who owns what
 *
 *   - fds you pass in are borrowed: the library duplicates what it needs before the call
 *     returns, so you may close yours at any time after the call.
 *   - the dma-buf fd of a result belongs to the ADmaLoadResult until you take it with
 *     ADmaLoadResult_takeFd(); from then on you own it and must close() it. A result
 *     released without taking its fd closes the fd.
 *   - the service keeps a byte charge for every buffer it loaded for you (it counts against
 *     your cap, DMALOAD_E_CALLER_CAP) until you call ADmaLoader_releaseBuffer() with the
 *     buffer's id or your process dies. Closing the fd frees the memory once every holder
 *     closed it, but does not end the charge: call ADmaLoader_releaseBuffer() when you are
 *     done with the buffer.
 *
 * ## Direct I/O
 *
 * The service reads exactly the fd it is given and never re-opens it, so it does direct I/O
 * (no page cache, no second copy) only if the fd was opened with O_DIRECT. The path-based
 * calls (ADmaLoadRequest_addFile, ADmaLoader_loadFile) open files with
 * `O_RDONLY | O_DIRECT | O_CLOEXEC` for you and fall back to a plain `O_RDONLY | O_CLOEXEC`
 * open where the file system refuses O_DIRECT, reporting the fallback. With the fd-based call
 * (ADmaLoadRequest_addSegment), open the file with O_DIRECT yourself to get direct I/O.
 *
 * ## Connecting
 *
 * ADmaLoader_create(NULL, ...) picks the service: on Android the service manager instance
 * `vendor.dmaload.IDmaLoader/default`. On Linux, in this order: the endpoint in
 * `$DMALOAD_ENDPOINT` (same syntax as the endpoint argument), the RPC socket in
 * `$DMALOAD_SOCKET`, kernel binder if /dev/binder exists and the service is registered there,
 * else the RPC socket `/tmp/dmaload.sock` (dmaloadd's default `--rpc-socket`).
 *
 * ## Example: load a file, use it, give it back
 *
 * @code
 * #include <dmaload.h>
 * #include <stdio.h>
 * #include <unistd.h>
 *
 * int load_weights(const char* path) {
 *     ADmaLoader* loader = NULL;
 *     int rc = ADmaLoader_create(NULL, &loader);
 *     if (rc != DMALOAD_OK) {
 *         fprintf(stderr, "connect: %s (%s)\n", ADmaLoad_errorString(rc), ADmaLoad_lastErrorMessage());
 *         return rc;
 *     }
 *     ADmaLoadResult* result = NULL;
 *     rc = ADmaLoader_loadFile(loader, path, NULL, &result);  // NULL heap: the service picks
 *     if (rc != DMALOAD_OK) {
 *         fprintf(stderr, "load %s: %s (%s)\n", path, ADmaLoad_errorString(rc), ADmaLoad_lastErrorMessage());
 *         ADmaLoader_release(loader);
 *         return rc;
 *     }
 *     int dmabuf_fd = -1;
 *     ADmaLoadResult_takeFd(result, &dmabuf_fd);            // now ours to close
 *     int64_t buffer_id = ADmaLoadResult_getBufferId(result);
 *     printf("%llu bytes in a %s buffer\n", (unsigned long long)ADmaLoadResult_getSize(result),
 *            ADmaLoadResult_getBackend(result));
 *     ADmaLoadResult_release(result);
 *
 *     // ... import dmabuf_fd into the accelerator driver, run the model ...
 *
 *     close(dmabuf_fd);
 *     ADmaLoader_releaseBuffer(loader, buffer_id);           // end the service's charge
 *     ADmaLoader_release(loader);
 *     return 0;
 * }
 * @endcode
 *
 * Segments, asynchronous loads with progress and cancellation, and every error path are
 * shown in client-ndk/examples/load_example.c and client-ndk/tests/c/dmaload_test.c.
 */

#ifndef DMALOAD_H
#define DMALOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__clang__) && !defined(_Nonnull)
#define _Nonnull
#define _Nullable
#endif

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Version of this header's API; grows when functions are added. 2: the functions marked
 * "API version 2", which need the service's interface version 2 (against a version 1
 * service they fail with -EOPNOTSUPP).
 */
#define DMALOAD_API_VERSION 2

/**
 * Status codes. 0 is success, positive values are the service's stable codes (they never
 * change meaning; new ones are appended), negative values are -errno (see the file comment).
 */
enum {
    DMALOAD_OK = 0,
    /** A request field is malformed (negative or zero where not allowed, bad tunable). */
    DMALOAD_E_INVALID_ARGUMENT = 1,
    /** A segment fd is closed, not a regular file, O_PATH, or not open for reading. */
    DMALOAD_E_BAD_FD = 2,
    /** The file range is past end of file, or offset + length overflows. */
    DMALOAD_E_RANGE = 3,
    /** No segments, too many, overlapping in the buffer, or beyond the buffer. */
    DMALOAD_E_BAD_SEGMENTS = 4,
    /** The heap name is not known or not present on this device (see ADmaLoader_getHeaps). */
    DMALOAD_E_UNKNOWN_BACKEND = 5,
    /** The heap is present but disabled by the service configuration. */
    DMALOAD_E_BACKEND_NOT_ALLOWED = 6,
    /** The buffer is larger than the service's maximum buffer size. */
    DMALOAD_E_TOO_LARGE = 7,
    /** The load would exceed the service's global byte cap: retry later or release buffers. */
    DMALOAD_E_GLOBAL_CAP = 8,
    /** The load would exceed this caller's byte cap: release buffers first. */
    DMALOAD_E_CALLER_CAP = 9,
    /** Too many concurrent loads (service-wide or for this caller): retry later. */
    DMALOAD_E_BUSY = 10,
    /** The kernel refused the buffer allocation. */
    DMALOAD_E_NO_MEMORY = 11,
    /** A read failed; ADmaLoad_lastErrorMessage() names the errno. */
    DMALOAD_E_IO = 12,
    /** The file shrank or was truncated during the load. */
    DMALOAD_E_FILE_CHANGED = 13,
    /** The load was cancelled (ADmaLoadTask_cancel, or the caller died). */
    DMALOAD_E_CANCELLED = 14,
    /** The caller is not allowed to use the service. */
    DMALOAD_E_PERMISSION_DENIED = 15,
    /** Unknown buffer id (ADmaLoader_releaseBuffer) or load handle. */
    DMALOAD_E_NOT_FOUND = 16,
    /** A bug in the service; ADmaLoad_lastErrorMessage() has details. Please report it. */
    DMALOAD_E_INTERNAL = 17,
    /**
     * The request would read more distinct files than one request carries (DMALOAD_MAX_FILES),
     * checked by the library before anything is sent. Read several segments of one file (they
     * share its fd), or split the load.
     */
    DMALOAD_E_TOO_MANY_FILES = 18,
    /**
     * API version 2: a digest the request expected (ADmaLoadRequest_expectDigest) differs from
     * the one the service computed while loading (or the kernel's fs-verity measurement).
     * Nothing was handed out and every byte was freed: the file is not the one expected.
     * ADmaLoad_lastErrorMessage() names the segment, the algorithm and both values.
     */
    DMALOAD_E_DIGEST_MISMATCH = 19,
};

/**
 * Most distinct files one request reads (an fd each, whatever number of segments read them):
 * what every binder transport carries in one call. The 65th distinct file fails with
 * DMALOAD_E_TOO_MANY_FILES.
 */
#define DMALOAD_MAX_FILES 64

/** Longest buffer name in bytes (ADmaLoadRequest_setName); the service enforces the same. */
#define DMALOAD_MAX_NAME_BYTES 200

/** How the service reads the file. */
typedef enum ADmaLoadIoMode {
    /** Direct I/O where the fd allows it, buffered otherwise (default). */
    ADMALOAD_IO_MODE_AUTO = 0,
    /** Direct I/O required. Where the fd lacks O_DIRECT or its file system has no direct I/O,
     *  reads fall back to buffered; the fallback is reported (ADmaLoadResult_getFallback). */
    ADMALOAD_IO_MODE_DIRECT = 1,
    /** Buffered reads through the page cache. */
    ADMALOAD_IO_MODE_BUFFERED = 2,
} ADmaLoadIoMode;

/** A connection to the service. Thread-safe. */
typedef struct ADmaLoader ADmaLoader;
/** A description of one load: file segments, heap, I/O mode, buffer name. */
typedef struct ADmaLoadRequest ADmaLoadRequest;
/** A finished load: the dma-buf fd, its size, id and statistics. */
typedef struct ADmaLoadResult ADmaLoadResult;
/** An asynchronous load in flight. */
typedef struct ADmaLoadTask ADmaLoadTask;
/** The buffer backends (dma-heaps, udmabuf, memfd) the service offers. */
typedef struct ADmaLoadHeapList ADmaLoadHeapList;

/**
 * Statistics of a finished load. Times in nanoseconds, sizes in bytes. Allocation and reads
 * overlap, so the times do not add up to total_ns.
 */
typedef struct ADmaLoadStats {
    /** Wall time of the whole load inside the service. */
    uint64_t total_ns;
    /** Allocating / populating the buffer memory. */
    uint64_t alloc_ns;
    /** From the start until the first gather (batch of buffer pages) held file data. */
    uint64_t first_gather_ns;
    /** Time reader threads spent in read calls (summed over threads). */
    uint64_t io_ns;
    /** Time spent copying bounce buffers into the buffer (summed over threads). */
    uint64_t copy_ns;
    /** File bytes read with direct I/O. */
    uint64_t direct_bytes;
    /** File bytes read through the page cache (fd without O_DIRECT, or a fallback). */
    uint64_t buffered_bytes;
    /** File bytes that went through a bounce buffer (copied once more). */
    uint64_t bounced_bytes;
} ADmaLoadStats;

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/**
 * A static, human-readable description of a status returned by this library: 0, a
 * DMALOAD_E_* code, or a negative errno. Never NULL; the string lives forever.
 */
const char* _Nonnull ADmaLoad_errorString(int status);

/**
 * The detailed message of the last call on the calling thread that failed (per thread, like
 * dlerror()). Valid until the next libdmaload call on this thread; "" when none failed.
 * Never NULL.
 */
const char* _Nonnull ADmaLoad_lastErrorMessage(void);

/* ---------------------------------------------------------------------------------------- */
/* Loader                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/**
 * Connects to the service.
 *
 * @param endpoint NULL to choose automatically (see "Connecting" above), or one of
 *        "binder" (kernel binder, default instance), "binder:<instance>",
 *        "unix:<socket path>", or an absolute socket path.
 * @param outLoader receives the loader on success; release it with ADmaLoader_release().
 * @return 0; -EINVAL for a malformed endpoint; -ENOENT / -ECONNREFUSED when no service
 *         answers there; another negative errno for other transport failures.
 */
int ADmaLoader_create(const char* _Nullable endpoint, ADmaLoader* _Nullable* _Nonnull outLoader);

/**
 * Releases a loader. Loads in flight on other threads finish first (they hold their own
 * reference); buffers already loaded stay valid and charged until ADmaLoader_releaseBuffer()
 * or process death. NULL is ignored.
 */
void ADmaLoader_release(ADmaLoader* _Nullable loader);

/**
 * Lists the buffer backends the service offers (dma-heaps by name, "udmabuf", "memfd").
 * @param outList receives the list; release it with ADmaLoadHeapList_release().
 */
int ADmaLoader_getHeaps(ADmaLoader* _Nonnull loader, ADmaLoadHeapList* _Nullable* _Nonnull outList);

/** Number of entries in the list. */
size_t ADmaLoadHeapList_getCount(const ADmaLoadHeapList* _Nonnull list);
/** Name of entry `index` (the value ADmaLoadRequest_setHeap takes); NULL if out of range.
 *  Valid as long as the list. */
const char* _Nullable ADmaLoadHeapList_getName(const ADmaLoadHeapList* _Nonnull list, size_t index);
/** Whether the service configuration allows loads into entry `index`. */
bool ADmaLoadHeapList_isAllowed(const ADmaLoadHeapList* _Nonnull list, size_t index);
/** Whether buffers of entry `index` are dma-bufs ("memfd" buffers are plain memfds). */
bool ADmaLoadHeapList_isDmaBuf(const ADmaLoadHeapList* _Nonnull list, size_t index);
/** Human-readable details of entry `index` (device, limits); NULL if out of range. */
const char* _Nullable ADmaLoadHeapList_getDetail(const ADmaLoadHeapList* _Nonnull list, size_t index);
/** Largest buffer the service allocates from entry `index`, in bytes; 0 if out of range. */
uint64_t ADmaLoadHeapList_getMaxBufferSize(const ADmaLoadHeapList* _Nonnull list, size_t index);
/** Releases the list. NULL is ignored. */
void ADmaLoadHeapList_release(ADmaLoadHeapList* _Nullable list);

/**
 * Ends the service's byte charge for a buffer this caller loaded (see "File descriptors").
 * The memory itself is freed when every fd of the buffer is closed.
 * @return 0; DMALOAD_E_NOT_FOUND if the id is unknown or already released.
 */
int ADmaLoader_releaseBuffer(ADmaLoader* _Nonnull loader, int64_t bufferId);

/* ---------------------------------------------------------------------------------------- */
/* Requests                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/**
 * Creates an empty request: no segments, heap chosen by the service, ADMALOAD_IO_MODE_AUTO,
 * buffer name "dmaload".
 * @param outRequest receives the request; release it with ADmaLoadRequest_release().
 */
int ADmaLoadRequest_create(ADmaLoadRequest* _Nullable* _Nonnull outRequest);

/** Releases a request and closes the fds it duplicated. NULL is ignored. */
void ADmaLoadRequest_release(ADmaLoadRequest* _Nullable request);

/**
 * Adds a segment: `length` bytes of the file open as `fd`, starting at `fileOffset`, placed
 * at `bufferOffset` in the buffer. The buffer's size is the end of the last segment.
 *
 * The fd is borrowed: the library duplicates it (close-on-exec) and you may close `fd` when
 * this call returns. It must be a regular file open for reading; open it with O_DIRECT to
 * get direct I/O (the service never changes its flags or re-opens it).
 *
 * Segments of one file share one duplicate: an fd of a file the request already reads (the
 * same file, opened with the same access mode and the same O_DIRECT) adds a segment and no
 * fd, so any number of segments of up to DMALOAD_MAX_FILES files fit one request.
 *
 * @param length bytes to load; 0 means "to the end of the file".
 * @return 0; -EINVAL if fd < 0; -EBADF (or another -errno) if it cannot be duplicated;
 *         DMALOAD_E_TOO_MANY_FILES for a file beyond DMALOAD_MAX_FILES distinct ones.
 *         Range and overlap errors are reported by the load (DMALOAD_E_RANGE,
 *         DMALOAD_E_BAD_SEGMENTS), and so is an fd that is not a readable regular file
 *         (DMALOAD_E_BAD_FD).
 */
int ADmaLoadRequest_addSegment(ADmaLoadRequest* _Nonnull request, int fd, uint64_t fileOffset,
                               uint64_t length, uint64_t bufferOffset);

/**
 * Like ADmaLoadRequest_addSegment(), but opens `path` itself with
 * O_RDONLY | O_DIRECT | O_CLOEXEC, falling back to a plain open where the file system refuses
 * O_DIRECT. The open never blocks (it is made with O_NONBLOCK | O_NOCTTY, cleared again on
 * the regular file it yields): a FIFO, a device or a directory fails at once with
 * DMALOAD_E_BAD_FD, as the service refuses such an fd. A file the request already reads
 * adds a segment and no fd.
 *
 * @param outDirect if not NULL, receives true when the file was opened with O_DIRECT and
 *        false after the fallback (the load then uses buffered I/O for this segment).
 * @return 0; the negative errno of open(2) (-ENOENT, -EACCES, ...) on failure;
 *         DMALOAD_E_BAD_FD if `path` is not a regular file; DMALOAD_E_TOO_MANY_FILES for a
 *         file beyond DMALOAD_MAX_FILES distinct ones.
 */
int ADmaLoadRequest_addFile(ADmaLoadRequest* _Nonnull request, const char* _Nonnull path,
                            uint64_t fileOffset, uint64_t length, uint64_t bufferOffset,
                            bool* _Nullable outDirect);

/**
 * API version 2. Selects the buffer backend by name, as ADmaLoader_getHeaps lists them: a
 * dma-heap ("heap:system", or just "system"), "udmabuf" or "memfd". NULL, "" or "auto" lets
 * the service choose. Unknown names fail at load time with DMALOAD_E_UNKNOWN_BACKEND.
 *
 * A backend is where the buffer's memory comes from; a heap is one kind of backend (a
 * dma-heap). The API version 1 names that say "Heap" for a backend (ADmaLoadRequest_setHeap,
 * ADmaLoader_getHeaps, ADmaLoadHeapList) keep their names and meaning for compatibility.
 */
int ADmaLoadRequest_setBackend(ADmaLoadRequest* _Nonnull request, const char* _Nullable backend);

/** The API version 1 name of ADmaLoadRequest_setBackend(): the same call. */
int ADmaLoadRequest_setHeap(ADmaLoadRequest* _Nonnull request, const char* _Nullable heap);

/**
 * Sets the gather size: how many bytes of buffer are allocated and filled per batch (the
 * service rounds it to its alignment). 0 (default) uses the service's setting.
 */
int ADmaLoadRequest_setGatherSize(ADmaLoadRequest* _Nonnull request, uint64_t gatherBytes);

/** Selects how the file is read. @return 0; -EINVAL for a value not in ADmaLoadIoMode. */
int ADmaLoadRequest_setIoMode(ADmaLoadRequest* _Nonnull request, ADmaLoadIoMode mode);

/**
 * Names the buffer (shown in /sys/kernel/debug/dma_buf/bufinfo and dumps; the kernel keeps
 * at most 31 bytes). The service prefixes it with your uid and shows control characters and
 * other invisible characters escaped (`\x1b`, `\u{202e}`).
 * @return 0; -EINVAL if `name` is NULL or longer than DMALOAD_MAX_NAME_BYTES (200) bytes.
 */
int ADmaLoadRequest_setName(ADmaLoadRequest* _Nonnull request, const char* _Nonnull name);

/* ---------------------------------------------------------------------------------------- */
/* Synchronous loads                                                                         */
/* ---------------------------------------------------------------------------------------- */

/**
 * Loads a request and waits until every byte is in.
 * @param outResult receives the result; release it with ADmaLoadResult_release().
 * @return 0; a DMALOAD_E_* code from the service; a negative errno on transport failure.
 */
int ADmaLoader_load(ADmaLoader* _Nonnull loader, const ADmaLoadRequest* _Nonnull request,
                    ADmaLoadResult* _Nullable* _Nonnull outResult);

/**
 * Loads a whole file: a one-segment request built from `path` (opened as in
 * ADmaLoadRequest_addFile: never blocking, DMALOAD_E_BAD_FD for anything but a regular file)
 * into `heap` (NULL: the service chooses), and waits.
 * ADmaLoadResult_openedWithDirectIo() tells whether the O_DIRECT open fell back.
 */
int ADmaLoader_loadFile(ADmaLoader* _Nonnull loader, const char* _Nonnull path,
                        const char* _Nullable heap, ADmaLoadResult* _Nullable* _Nonnull outResult);

/* ---------------------------------------------------------------------------------------- */
/* Asynchronous loads                                                                        */
/* ---------------------------------------------------------------------------------------- */

/**
 * Callbacks of an asynchronous load.
 *
 * They run on a thread owned by the library (a binder thread), never on the thread that
 * called ADmaLoader_loadAsync(). The callbacks of one task never run concurrently, and
 * onComplete runs exactly once, after every onProgress. Keep them short: a slow callback
 * delays the delivery of others. They may call any libdmaload function except
 * ADmaLoadTask_release() and ADmaLoadTask_wait() on their own task.
 */
typedef struct ADmaLoadCallbacks {
    /**
     * Optional. Called as data arrives: `bytesLoaded` of `bytesTotal` are in the buffer.
     * Not every step is reported; the last call may come before 100 %.
     */
    void (*_Nullable onProgress)(void* _Nullable userData, uint64_t bytesLoaded,
                                 uint64_t bytesTotal);
    /**
     * Optional. Called once when the load ends. `status` is 0, a DMALOAD_E_* code
     * (DMALOAD_E_CANCELLED after ADmaLoadTask_cancel) or a negative errno; `message` is the
     * detailed error ("" on success), valid during the call. On success `result` is a new
     * ADmaLoadResult that the callback now owns (release it with ADmaLoadResult_release(),
     * now or later); on failure it is NULL. When onComplete is NULL the result stays with the
     * task and ADmaLoadTask_wait() hands it out.
     */
    void (*_Nullable onComplete)(void* _Nullable userData, int status,
                                 const char* _Nonnull message,
                                 ADmaLoadResult* _Nullable result);
} ADmaLoadCallbacks;

/**
 * Starts loading a request and returns at once.
 *
 * @param callbacks may be NULL (then use ADmaLoadTask_wait); copied, need not outlive the call.
 * @param userData passed to the callbacks; must stay valid until onComplete ran or
 *        ADmaLoadTask_release() returned.
 * @param outTask receives the task; release it with ADmaLoadTask_release().
 * @return 0 when the load started (its outcome arrives through onComplete / wait); a
 *         negative errno when it could not be started. Errors of the load itself (including
 *         the service refusing it) arrive through onComplete / ADmaLoadTask_wait.
 */
int ADmaLoader_loadAsync(ADmaLoader* _Nonnull loader, const ADmaLoadRequest* _Nonnull request,
                         const ADmaLoadCallbacks* _Nullable callbacks, void* _Nullable userData,
                         ADmaLoadTask* _Nullable* _Nonnull outTask);

/**
 * Asks the service to stop the load. Returns at once; the load ends with
 * DMALOAD_E_CANCELLED (or succeeds if it had already finished) and everything it allocated
 * is freed. Cancelling a finished task does nothing. @return 0.
 */
int ADmaLoadTask_cancel(ADmaLoadTask* _Nonnull task);

/** Whether the load has ended (onComplete has returned, if set). */
bool ADmaLoadTask_isDone(const ADmaLoadTask* _Nonnull task);

/**
 * Waits until the load has ended and returns its status.
 * @param outResult if not NULL and the load succeeded and onComplete was NULL, receives the
 *        result (once; later calls give NULL). Otherwise set to NULL.
 */
int ADmaLoadTask_wait(ADmaLoadTask* _Nonnull task, ADmaLoadResult* _Nullable* _Nullable outResult);

/**
 * Releases a task. If the load is still running it is cancelled and this call waits until
 * onComplete has returned, so `userData` may be freed right after. A result still held by
 * the task is released (its fd closed). NULL is ignored.
 */
void ADmaLoadTask_release(ADmaLoadTask* _Nullable task);

/* ---------------------------------------------------------------------------------------- */
/* Results                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/** The dma-buf fd, still owned by the result (-1 once taken). Do not close it. */
int ADmaLoadResult_getFd(const ADmaLoadResult* _Nonnull result);

/**
 * Takes ownership of the dma-buf fd: you must close() it. Later calls fail with -EBADF.
 * @param outFd receives the fd (close-on-exec).
 */
int ADmaLoadResult_takeFd(ADmaLoadResult* _Nonnull result, int* _Nonnull outFd);

/** Buffer size in bytes. */
uint64_t ADmaLoadResult_getSize(const ADmaLoadResult* _Nonnull result);

/** The service's id for the buffer, for ADmaLoader_releaseBuffer(). */
int64_t ADmaLoadResult_getBufferId(const ADmaLoadResult* _Nonnull result);

/** The backend the buffer came from ("heap:system", "udmabuf", "memfd"). Valid as long as
 *  the result. A "memfd" buffer is a sealed memfd, not a dma-buf. */
const char* _Nonnull ADmaLoadResult_getBackend(const ADmaLoadResult* _Nonnull result);

/** The buffer's name. Valid as long as the result. */
const char* _Nonnull ADmaLoadResult_getName(const ADmaLoadResult* _Nonnull result);

/** How the file was read: ADMALOAD_IO_MODE_DIRECT, _BUFFERED, or _AUTO when both were used. */
ADmaLoadIoMode ADmaLoadResult_getIoMode(const ADmaLoadResult* _Nonnull result);

/**
 * False if a path-based call had to open a file without O_DIRECT because its file system
 * refuses it; true otherwise (also for fd-based requests).
 */
bool ADmaLoadResult_openedWithDirectIo(const ADmaLoadResult* _Nonnull result);

/** Copies the load's statistics into `outStats`. */
void ADmaLoadResult_getStats(const ADmaLoadResult* _Nonnull result, ADmaLoadStats* _Nonnull outStats);

/**
 * Number of fallbacks the load took (another backend than preferred, buffered instead of
 * direct I/O, bounce blocks for unaligned bytes, small pages instead of huge ones).
 */
size_t ADmaLoadResult_getFallbackCount(const ADmaLoadResult* _Nonnull result);

/**
 * Fallback `index` as "<kind>: <reason>", e.g. "buffered-io: fd not opened with O_DIRECT".
 * NULL if out of range. Valid as long as the result.
 */
const char* _Nullable ADmaLoadResult_getFallback(const ADmaLoadResult* _Nonnull result, size_t index);

/**
 * Releases a result; closes its fd unless it was taken. Does not end the service's charge
 * for the buffer (ADmaLoader_releaseBuffer does). NULL is ignored.
 */
void ADmaLoadResult_release(ADmaLoadResult* _Nullable result);

/* ---------------------------------------------------------------------------------------- */
/* API version 2: warm reuse (shared buffers)                                                */
/* ---------------------------------------------------------------------------------------- */

/**
 * Where a result's buffer came from (ADmaLoadResult_getReuse). Only shareable requests
 * (ADmaLoadRequest_setShareable) get anything but ADMALOAD_REUSE_NONE.
 */
typedef enum ADmaLoadReuse {
    /** Loaded for this request. */
    ADMALOAD_REUSE_NONE = 0,
    /** An identical load was in flight; this request waited for it instead of loading again. */
    ADMALOAD_REUSE_COALESCED = 1,
    /** A live buffer another shareable request of your uid holds: no I/O, no new memory. */
    ADMALOAD_REUSE_SHARED = 2,
    /** A buffer the service kept warm after its release: no I/O, no new memory. */
    ADMALOAD_REUSE_CACHED = 3,
} ADmaLoadReuse;

/**
 * API version 2. Marks the request shareable: the service may answer it with the buffer it
 * already loaded for another shareable request of your uid for the same content (the same
 * files, unchanged since, the same segments, heap and digests), with the buffer of such a
 * load in flight, or with one it kept warm after its release (if the device configured a
 * cache). Files are told apart by what fstat says of the fds you pass (device, inode, size,
 * modification and change times), never by path; buffers are never shared across uids.
 *
 * A shared buffer is the same memory for every holder: do not write to it. Each holder gets
 * its own fd and buffer id and calls ADmaLoader_releaseBuffer() for its own; the memory
 * (charged to your uid once) stays until the last holder released it or died, and, if the
 * service keeps it warm, until the cache lets it go.
 *
 * @return 0; -EINVAL for a NULL request. Against a service of interface version 1 the load
 *         fails with -EOPNOTSUPP.
 */
int ADmaLoadRequest_setShareable(ADmaLoadRequest* _Nonnull request, bool shareable);

/** API version 2. Where the buffer came from: an ADmaLoadReuse value. */
ADmaLoadReuse ADmaLoadResult_getReuse(const ADmaLoadResult* _Nonnull result);

/* ---------------------------------------------------------------------------------------- */
/* Digests (API version 2)                                                                   */
/* ---------------------------------------------------------------------------------------- */

/*
 * The service can digest every segment while it loads it, from the bytes it just read (never
 * in a second pass over the buffer), and refuse to hand out a buffer whose segment does not
 * have the digest you expect: a corrupted or swapped model file never reaches the
 * accelerator. A segment is named by its index: the order in which ADmaLoadRequest_addSegment
 * / ADmaLoadRequest_addFile added it, from 0. Its digest is over its own bytes, as if they
 * were a file of their own. These functions need the service's interface version 2: against
 * a version 1 service a load that uses them fails with -EOPNOTSUPP before anything is sent.
 */

/** How a segment's bytes are digested (the AIDL DigestAlgorithm's values). */
typedef enum ADmaLoadDigestAlgorithm {
    /** SHA-256 of the segment's bytes: what `sha256sum` prints for a whole file. */
    ADMALOAD_DIGEST_SHA256 = 1,
    /**
     * The fs-verity file digest of the segment's bytes (SHA-256 Merkle tree over 4 KiB
     * blocks, no salt): what `fsverity digest` prints for a whole file. For a segment that is
     * a whole file with fs-verity enabled, the service reports the kernel's measurement
     * (ADmaLoadResult_getDigest's outFromKernel), which the kernel checked every page against.
     */
    ADMALOAD_DIGEST_FSVERITY_SHA256 = 2,
} ADmaLoadDigestAlgorithm;

/** Bytes of every digest. */
#define DMALOAD_DIGEST_BYTES 32

/**
 * API version 2. Has the service compute `algorithm` for every segment while loading;
 * the result carries them (ADmaLoadResult_getDigest). Asking twice asks once.
 * @return 0; -EINVAL for a value not in ADmaLoadDigestAlgorithm.
 */
int ADmaLoadRequest_addDigest(ADmaLoadRequest* _Nonnull request, ADmaLoadDigestAlgorithm algorithm);

/**
 * API version 2. Requires segment `segmentIndex` to have `digest` (`digestLength` bytes,
 * DMALOAD_DIGEST_BYTES) as its `algorithm` digest: the service computes it while loading and
 * fails the load with DMALOAD_E_DIGEST_MISMATCH, handing nothing out, when it differs. The
 * result carries the digest (it matched). A later call for the same segment and algorithm
 * replaces the earlier value. A segment the request does not have fails the load with
 * DMALOAD_E_INVALID_ARGUMENT.
 * @return 0; -EINVAL for a NULL `digest`, a length other than DMALOAD_DIGEST_BYTES or an
 *         unknown algorithm.
 */
int ADmaLoadRequest_expectDigest(ADmaLoadRequest* _Nonnull request, size_t segmentIndex,
                                 ADmaLoadDigestAlgorithm algorithm,
                                 const uint8_t* _Nonnull digest, size_t digestLength);

/** API version 2. Number of digests in the result (by segment, then algorithm). */
size_t ADmaLoadResult_getDigestCount(const ADmaLoadResult* _Nonnull result);

/**
 * API version 2. Digest `index`: its DMALOAD_DIGEST_BYTES bytes, valid as long as the result;
 * NULL if `index` is out of range.
 * @param outSegmentIndex if not NULL, receives the segment it covers.
 * @param outAlgorithm if not NULL, receives its algorithm.
 * @param outFromKernel if not NULL, receives true when it is the kernel's fs-verity
 *        measurement of the segment's file, false when the service computed it.
 */
const uint8_t* _Nullable ADmaLoadResult_getDigest(const ADmaLoadResult* _Nonnull result,
                                                  size_t index,
                                                  size_t* _Nullable outSegmentIndex,
                                                  ADmaLoadDigestAlgorithm* _Nullable outAlgorithm,
                                                  bool* _Nullable outFromKernel);

/**
 * API version 2. Time the service spent computing digests, in nanoseconds summed over its
 * threads (it overlaps the reads, so it is not added to total_ns); 0 without digests.
 */
uint64_t ADmaLoadResult_getDigestTimeNs(const ADmaLoadResult* _Nonnull result);

/**
 * API version 2. Working memory the load reserved beside its buffer (bounce blocks, digest
 * state), in bytes: charged to your uid while the load ran, freed when it ended.
 */
uint64_t ADmaLoadResult_getWorkingBytes(const ADmaLoadResult* _Nonnull result);

#ifdef __cplusplus
}
#endif

#endif /* DMALOAD_H */
