/*
 * Copyright 2026 The dmaload Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * End-to-end test of libdmaload's C API against a running dmaload service.
 *
 *   dmaload_test DIR [ENDPOINT]
 *
 * DIR is a directory on a real file system where test files are created (and removed).
 * ENDPOINT is passed to ADmaLoader_create (NULL when omitted: environment / defaults).
 * Prints one line per check and "N passed, M failed"; exits non-zero on any failure.
 * Compiled with -Wall -Wextra -Werror against include/dmaload.h only.
 */

#define _GNU_SOURCE
#include <dmaload.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/dma-buf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_passed;
static int g_failed;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (cond) {                                                              \
            g_passed++;                                                          \
        } else {                                                                 \
            g_failed++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, " [last error: %s]\n", ADmaLoad_lastErrorMessage()); \
        }                                                                        \
    } while (0)

#define CHECK_RC(rc, expected, what)                                                   \
    CHECK((rc) == (expected), "%s returned %d (%s), expected %d (%s)", what, (rc),     \
          ADmaLoad_errorString(rc), (expected), ADmaLoad_errorString(expected))

static const char* g_dir;
static const char* g_endpoint;

/* Byte i of every test file: a pattern that differs at every offset modulo 251. */
static uint8_t pattern(uint64_t i) {
    return (uint8_t)((i * 7 + i / 251) % 251);
}

static char* make_file(const char* name, uint64_t size) {
    char* path = NULL;
    if (asprintf(&path, "%s/%s", g_dir, name) < 0) abort();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        abort();
    }
    uint8_t* chunk = malloc(1 << 20);
    if (!chunk) abort();
    for (uint64_t off = 0; off < size;) {
        size_t n = (size - off) < (1u << 20) ? (size_t)(size - off) : (1u << 20);
        for (size_t i = 0; i < n; i++) chunk[i] = pattern(off + i);
        if (write(fd, chunk, n) != (ssize_t)n) {
            perror("write");
            abort();
        }
        off += n;
    }
    free(chunk);
    fsync(fd);
    close(fd);
    return path;
}

static int count_open_fds(void) {
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return -1;
    int n = 0;
    struct dirent* e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(dir);
    return n - 1; /* the DIR's own fd */
}

/*
 * Maps `len` bytes of the buffer fd and checks they equal the file's bytes
 * [fileOffset, fileOffset + len) placed at bufferOffset. Syncs with DMA_BUF_IOCTL_SYNC around
 * the CPU access (a memfd buffer answers ENOTTY, which is fine: no sync needed).
 */
static int verify_bytes(int fd, uint64_t bufferOffset, uint64_t fileOffset, uint64_t len) {
    size_t map_len = (size_t)(bufferOffset + len);
    uint8_t* p = mmap(NULL, map_len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 0;
    }
    struct dma_buf_sync sync = {.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ};
    int synced = ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) == 0;
    if (!synced && errno != ENOTTY) perror("DMA_BUF_IOCTL_SYNC start");
    int ok = 1;
    for (uint64_t i = 0; i < len; i++) {
        if (p[bufferOffset + i] != pattern(fileOffset + i)) {
            fprintf(stderr, "byte %" PRIu64 " of the buffer is %u, expected %u\n", bufferOffset + i,
                    p[bufferOffset + i], pattern(fileOffset + i));
            ok = 0;
            break;
        }
    }
    if (synced) {
        sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
        if (ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) != 0) perror("DMA_BUF_IOCTL_SYNC end");
    }
    munmap(p, map_len);
    return ok;
}

static void test_error_strings(void) {
    CHECK(strcmp(ADmaLoad_errorString(DMALOAD_OK), "success") == 0, "0");
    for (int code = DMALOAD_E_INVALID_ARGUMENT; code <= DMALOAD_E_TOO_MANY_FILES; code++) {
        const char* s = ADmaLoad_errorString(code);
        CHECK(s != NULL && strlen(s) > 10, "code %d has no message", code);
    }
    CHECK(strstr(ADmaLoad_errorString(DMALOAD_E_CALLER_CAP), "release") != NULL, "%s",
          ADmaLoad_errorString(DMALOAD_E_CALLER_CAP));
    CHECK(strstr(ADmaLoad_errorString(-ENOENT), "No such file") != NULL, "%s",
          ADmaLoad_errorString(-ENOENT));
    CHECK(ADmaLoad_errorString(123456) != NULL, "unknown code");
    /* Same pointer for the same code: the strings are static. */
    CHECK(ADmaLoad_errorString(DMALOAD_E_IO) == ADmaLoad_errorString(DMALOAD_E_IO), "static");
}

static void test_connect_errors(void) {
    ADmaLoader* loader = NULL;
    CHECK_RC(ADmaLoader_create("tcp:nowhere", &loader), -EINVAL, "create(bad endpoint)");
    CHECK(loader == NULL, "out-parameter written on failure");
    CHECK(strstr(ADmaLoad_lastErrorMessage(), "tcp:nowhere") != NULL, "%s", ADmaLoad_lastErrorMessage());
    int rc = ADmaLoader_create("unix:/nonexistent/dmaload/dmaloadd.sock", &loader);
    CHECK(rc < 0, "create(missing socket) returned %d", rc);
    CHECK_RC(ADmaLoader_create(NULL, NULL), -EINVAL, "create(NULL out)");
    ADmaLoader_release(NULL);
    ADmaLoadRequest_release(NULL);
    ADmaLoadResult_release(NULL);
    ADmaLoadTask_release(NULL);
    ADmaLoadHeapList_release(NULL);
}

static void test_heaps(ADmaLoader* loader) {
    ADmaLoadHeapList* list = NULL;
    int rc = ADmaLoader_getHeaps(loader, &list);
    CHECK_RC(rc, DMALOAD_OK, "getHeaps");
    if (rc != DMALOAD_OK) return;
    size_t n = ADmaLoadHeapList_getCount(list);
    CHECK(n > 0, "no heaps");
    int has_memfd = 0;
    for (size_t i = 0; i < n; i++) {
        const char* name = ADmaLoadHeapList_getName(list, i);
        CHECK(name != NULL && name[0] != '\0', "heap %zu unnamed", i);
        if (name && strcmp(name, "memfd") == 0) has_memfd = 1;
        printf("  heap %-14s allowed=%d dma-buf=%d max=%" PRIu64 " %s\n", name ? name : "?",
               ADmaLoadHeapList_isAllowed(list, i), ADmaLoadHeapList_isDmaBuf(list, i),
               ADmaLoadHeapList_getMaxBufferSize(list, i), ADmaLoadHeapList_getDetail(list, i));
    }
    CHECK(has_memfd, "memfd backend not listed");
    CHECK(ADmaLoadHeapList_getName(list, n) == NULL, "out of range name");
    CHECK(ADmaLoadHeapList_getMaxBufferSize(list, n) == 0, "out of range size");
    ADmaLoadHeapList_release(list);
}

static void test_load_file(ADmaLoader* loader, const char* path, uint64_t size) {
    ADmaLoadResult* result = NULL;
    int rc = ADmaLoader_loadFile(loader, path, NULL, &result);
    CHECK_RC(rc, DMALOAD_OK, "loadFile");
    if (rc != DMALOAD_OK) return;
    CHECK(ADmaLoadResult_getSize(result) >= size, "size %" PRIu64, ADmaLoadResult_getSize(result));
    CHECK(ADmaLoadResult_openedWithDirectIo(result), "opened without O_DIRECT on a real file system");
    CHECK(ADmaLoadResult_getBackend(result)[0] != '\0', "no backend name");
    ADmaLoadStats stats;
    memset(&stats, 0xff, sizeof stats);
    ADmaLoadResult_getStats(result, &stats);
    CHECK(stats.direct_bytes + stats.buffered_bytes >= size, "stats count %" PRIu64 " + %" PRIu64 " bytes",
          stats.direct_bytes, stats.buffered_bytes);
    CHECK(stats.total_ns > 0 && stats.total_ns != UINT64_MAX, "total_ns %" PRIu64, stats.total_ns);
    for (size_t i = 0; i < ADmaLoadResult_getFallbackCount(result); i++) {
        printf("  fallback: %s\n", ADmaLoadResult_getFallback(result, i));
    }
    CHECK(ADmaLoadResult_getFallback(result, ADmaLoadResult_getFallbackCount(result)) == NULL, "range");
    printf("  loaded %" PRIu64 " bytes into %s (%s), %" PRIu64 " ns, direct %" PRIu64 " B\n",
           ADmaLoadResult_getSize(result), ADmaLoadResult_getBackend(result),
           ADmaLoadResult_getName(result), stats.total_ns, stats.direct_bytes);

    int borrowed = ADmaLoadResult_getFd(result);
    CHECK(borrowed >= 0, "getFd %d", borrowed);
    int fd = -1;
    CHECK_RC(ADmaLoadResult_takeFd(result, &fd), DMALOAD_OK, "takeFd");
    CHECK(fd == borrowed, "takeFd gave %d, getFd %d", fd, borrowed);
    CHECK(ADmaLoadResult_getFd(result) == -1, "fd still owned after take");
    int again = -1;
    CHECK_RC(ADmaLoadResult_takeFd(result, &again), -EBADF, "takeFd twice");
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "buffer fd is not close-on-exec");
    int64_t id = ADmaLoadResult_getBufferId(result);
    ADmaLoadResult_release(result);
    /* The fd is ours: it survives the result. */
    CHECK(verify_bytes(fd, 0, 0, size), "loaded bytes differ from the file");
    close(fd);
    CHECK_RC(ADmaLoader_releaseBuffer(loader, id), DMALOAD_OK, "releaseBuffer");
    CHECK_RC(ADmaLoader_releaseBuffer(loader, id), DMALOAD_E_NOT_FOUND, "releaseBuffer twice");
}

/* API version 2: two shareable requests of this uid for the same file get one buffer (the
 * second without I/O); a request without the flag gets its own. */
static void test_shareable(ADmaLoader* loader, const char* path, uint64_t size) {
#if DMALOAD_API_VERSION < 2
#error "dmaload.h lacks the version 2 functions"
#endif
    ADmaLoadRequest* req = NULL;
    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "create");
    if (!req) return;
    CHECK_RC(ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL), DMALOAD_OK, "addFile");
    CHECK_RC(ADmaLoadRequest_setHeap(req, "memfd"), DMALOAD_OK, "setHeap");
    CHECK_RC(ADmaLoadRequest_setShareable(NULL, true), -EINVAL, "setShareable(NULL)");
    CHECK_RC(ADmaLoadRequest_setShareable(req, true), DMALOAD_OK, "setShareable");
    ADmaLoadResult* first = NULL;
    ADmaLoadResult* second = NULL;
    CHECK_RC(ADmaLoader_load(loader, req, &first), DMALOAD_OK, "first shareable load");
    CHECK_RC(ADmaLoader_load(loader, req, &second), DMALOAD_OK, "second shareable load");
    if (first && second) {
        CHECK(ADmaLoadResult_getReuse(first) == ADMALOAD_REUSE_NONE, "first: reuse %d",
              (int)ADmaLoadResult_getReuse(first));
        CHECK(ADmaLoadResult_getReuse(second) == ADMALOAD_REUSE_SHARED, "second: reuse %d",
              (int)ADmaLoadResult_getReuse(second));
        ADmaLoadStats stats;
        ADmaLoadResult_getStats(second, &stats);
        CHECK(stats.direct_bytes + stats.buffered_bytes == 0, "a shared buffer read %" PRIu64 " bytes",
              stats.direct_bytes + stats.buffered_bytes);
        CHECK(ADmaLoadResult_getBufferId(first) != ADmaLoadResult_getBufferId(second),
              "every holder has its own buffer id");
        CHECK(verify_bytes(ADmaLoadResult_getFd(second), 0, 0, size), "shared bytes differ from the file");
    }
    CHECK_RC(ADmaLoadRequest_setShareable(req, false), DMALOAD_OK, "setShareable(false)");
    ADmaLoadResult* own = NULL;
    CHECK_RC(ADmaLoader_load(loader, req, &own), DMALOAD_OK, "load without the flag");
    if (own) {
        CHECK(ADmaLoadResult_getReuse(own) == ADMALOAD_REUSE_NONE, "own: reuse %d",
              (int)ADmaLoadResult_getReuse(own));
    }
    ADmaLoadResult* all[] = {first, second, own};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (!all[i]) continue;
        CHECK_RC(ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(all[i])), DMALOAD_OK,
                 "releaseBuffer");
        ADmaLoadResult_release(all[i]);
    }
    ADmaLoadRequest_release(req);
}

/* Two segments of one file, swapped in the buffer, from fds the test opens itself. */
static void test_segments(ADmaLoader* loader, const char* path) {
    const uint64_t a_off = 4096, a_len = 64 * 1024, b_off = 1 << 20, b_len = 128 * 1024 + 512;
    int direct_fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    int plain_fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(direct_fd >= 0 && plain_fd >= 0, "open %s", path);
    ADmaLoadRequest* req = NULL;
    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "request create");
    CHECK_RC(ADmaLoadRequest_addSegment(req, direct_fd, b_off, b_len, 0), DMALOAD_OK, "addSegment b");
    CHECK_RC(ADmaLoadRequest_addSegment(req, plain_fd, a_off, a_len, b_len), DMALOAD_OK, "addSegment a");
    /* Borrowed: closing ours right away must not matter. */
    close(direct_fd);
    close(plain_fd);
    CHECK_RC(ADmaLoadRequest_setName(req, "segments-test"), DMALOAD_OK, "setName");
    CHECK_RC(ADmaLoadRequest_setGatherSize(req, 1 << 20), DMALOAD_OK, "setGatherSize");
    ADmaLoadResult* result = NULL;
    int rc = ADmaLoader_load(loader, req, &result);
    CHECK_RC(rc, DMALOAD_OK, "load segments");
    if (rc == DMALOAD_OK) {
        CHECK(ADmaLoadResult_getSize(result) >= a_len + b_len, "size");
        /* The service may prefix the name with the caller's uid; it keeps ours at the end. */
        const char* name = ADmaLoadResult_getName(result);
        CHECK(strlen(name) >= 13 && strcmp(name + strlen(name) - 13, "segments-test") == 0, "name %s", name);
        ADmaLoadStats stats;
        ADmaLoadResult_getStats(result, &stats);
        CHECK(stats.buffered_bytes > 0, "the non-O_DIRECT segment must be read buffered");
        int fd = ADmaLoadResult_getFd(result);
        CHECK(verify_bytes(fd, 0, b_off, b_len), "segment b");
        CHECK(verify_bytes(fd, b_len, a_off, a_len), "segment a");
        int64_t id = ADmaLoadResult_getBufferId(result);
        ADmaLoadResult_release(result); /* closes the fd we did not take */
        CHECK_RC(ADmaLoader_releaseBuffer(loader, id), DMALOAD_OK, "releaseBuffer");
    }
    /* The same request can be loaded again (loads only read it). */
    rc = ADmaLoader_load(loader, req, &result);
    CHECK_RC(rc, DMALOAD_OK, "load the same request twice");
    if (rc == DMALOAD_OK) {
        int64_t id = ADmaLoadResult_getBufferId(result);
        ADmaLoadResult_release(result);
        ADmaLoader_releaseBuffer(loader, id);
    }
    ADmaLoadRequest_release(req);
}

struct async_state {
    pthread_mutex_t lock;
    uint64_t progress_calls;
    uint64_t last_loaded;
    uint64_t total;
    int complete_calls;
    int status;
    int progress_after_complete;
    int monotonic;
    pthread_t caller;
    int on_caller_thread;
    ADmaLoadResult* result;
};

static void on_progress(void* user, uint64_t loaded, uint64_t total) {
    struct async_state* s = user;
    pthread_mutex_lock(&s->lock);
    s->progress_calls++;
    if (loaded < s->last_loaded || loaded > total) s->monotonic = 0;
    if (s->complete_calls) s->progress_after_complete = 1;
    if (pthread_equal(pthread_self(), s->caller)) s->on_caller_thread = 1;
    s->last_loaded = loaded;
    s->total = total;
    pthread_mutex_unlock(&s->lock);
}

static void on_complete(void* user, int status, const char* message, ADmaLoadResult* result) {
    struct async_state* s = user;
    pthread_mutex_lock(&s->lock);
    s->complete_calls++;
    s->status = status;
    s->result = result;
    if (pthread_equal(pthread_self(), s->caller)) s->on_caller_thread = 1;
    if (status != DMALOAD_OK) printf("  onComplete: %d %s\n", status, message);
    pthread_mutex_unlock(&s->lock);
}

static void init_state(struct async_state* s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->monotonic = 1;
    s->status = 12345;
    s->caller = pthread_self();
}

static void test_async(ADmaLoader* loader, const char* path, uint64_t size) {
    ADmaLoadRequest* req = NULL;
    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "request create");
    bool direct = false;
    CHECK_RC(ADmaLoadRequest_addFile(req, path, 0, 0, 0, &direct), DMALOAD_OK, "addFile");
    CHECK(direct, "a real file system should take O_DIRECT");
    CHECK_RC(ADmaLoadRequest_setGatherSize(req, 4 << 20), DMALOAD_OK, "setGatherSize");

    struct async_state s;
    init_state(&s);
    ADmaLoadCallbacks cb = {.onProgress = on_progress, .onComplete = on_complete};
    ADmaLoadTask* task = NULL;
    int rc = ADmaLoader_loadAsync(loader, req, &cb, &s, &task);
    CHECK_RC(rc, DMALOAD_OK, "loadAsync");
    if (rc == DMALOAD_OK) {
        ADmaLoadResult* none = (ADmaLoadResult*)1;
        CHECK_RC(ADmaLoadTask_wait(task, &none), DMALOAD_OK, "wait");
        CHECK(none == NULL, "wait handed out a result that onComplete owns");
        CHECK(ADmaLoadTask_isDone(task), "isDone after wait");
        pthread_mutex_lock(&s.lock);
        CHECK(s.complete_calls == 1, "onComplete ran %d times", s.complete_calls);
        CHECK(s.status == DMALOAD_OK, "status %d", s.status);
        CHECK(s.progress_calls > 0, "no progress reported for %" PRIu64 " bytes", size);
        CHECK(s.monotonic, "progress went backwards or past the total");
        CHECK(s.total >= size, "progress total %" PRIu64, s.total);
        CHECK(!s.progress_after_complete, "progress after completion");
        CHECK(!s.on_caller_thread, "a callback ran on the calling thread");
        ADmaLoadResult* result = s.result;
        pthread_mutex_unlock(&s.lock);
        printf("  async: %" PRIu64 " progress calls\n", s.progress_calls);
        if (result) {
            CHECK(verify_bytes(ADmaLoadResult_getFd(result), 0, 0, size), "async bytes");
            ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(result));
            ADmaLoadResult_release(result);
        }
        ADmaLoadTask_release(task);
    }

    /* No callbacks: the result stays with the task and wait() hands it out once. */
    rc = ADmaLoader_loadAsync(loader, req, NULL, NULL, &task);
    CHECK_RC(rc, DMALOAD_OK, "loadAsync without callbacks");
    if (rc == DMALOAD_OK) {
        ADmaLoadResult* result = NULL;
        CHECK_RC(ADmaLoadTask_wait(task, &result), DMALOAD_OK, "wait");
        CHECK(result != NULL, "no result from wait");
        ADmaLoadResult* second = NULL;
        CHECK_RC(ADmaLoadTask_wait(task, &second), DMALOAD_OK, "wait again");
        CHECK(second == NULL, "result handed out twice");
        if (result) {
            ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(result));
            ADmaLoadResult_release(result);
        }
        ADmaLoadTask_release(task);
    }
    ADmaLoadRequest_release(req);
}

static void test_cancel(ADmaLoader* loader, const char* path) {
    ADmaLoadRequest* req = NULL;
    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "request create");
    CHECK_RC(ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL), DMALOAD_OK, "addFile");
    CHECK_RC(ADmaLoadRequest_setGatherSize(req, 1 << 20), DMALOAD_OK, "setGatherSize");
    struct async_state s;
    init_state(&s);
    ADmaLoadCallbacks cb = {.onProgress = on_progress, .onComplete = on_complete};
    ADmaLoadTask* task = NULL;
    int rc = ADmaLoader_loadAsync(loader, req, &cb, &s, &task);
    CHECK_RC(rc, DMALOAD_OK, "loadAsync");
    if (rc == DMALOAD_OK) {
        CHECK_RC(ADmaLoadTask_cancel(task), DMALOAD_OK, "cancel");
        int status = ADmaLoadTask_wait(task, NULL);
        CHECK_RC(status, DMALOAD_E_CANCELLED, "wait after cancel");
        pthread_mutex_lock(&s.lock);
        CHECK(s.complete_calls == 1 && s.status == DMALOAD_E_CANCELLED && s.result == NULL,
              "onComplete %d status %d", s.complete_calls, s.status);
        pthread_mutex_unlock(&s.lock);
        CHECK_RC(ADmaLoadTask_cancel(task), DMALOAD_OK, "cancel a finished task");
        ADmaLoadTask_release(task);
    }

    /* Releasing a running task cancels it and returns after onComplete ran. */
    init_state(&s);
    rc = ADmaLoader_loadAsync(loader, req, &cb, &s, &task);
    CHECK_RC(rc, DMALOAD_OK, "loadAsync");
    if (rc == DMALOAD_OK) {
        ADmaLoadTask_release(task);
        pthread_mutex_lock(&s.lock);
        CHECK(s.complete_calls == 1, "release returned before onComplete (%d)", s.complete_calls);
        if (s.result) {
            ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(s.result));
            ADmaLoadResult_release(s.result);
        }
        pthread_mutex_unlock(&s.lock);
    }
    ADmaLoadRequest_release(req);
}

static int load_expect(ADmaLoader* loader, ADmaLoadRequest* req, int expected, const char* what) {
    ADmaLoadResult* result = NULL;
    int rc = ADmaLoader_load(loader, req, &result);
    CHECK_RC(rc, expected, what);
    if (rc == expected && rc != DMALOAD_OK) {
        const char* msg = ADmaLoad_lastErrorMessage();
        CHECK(msg[0] != '\0', "%s: no detailed message", what);
        printf("  %-34s -> %s\n", what, msg);
    }
    CHECK(rc == DMALOAD_OK || result == NULL, "result written on failure");
    if (result) {
        ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(result));
        ADmaLoadResult_release(result);
    }
    return rc;
}

static void test_error_paths(ADmaLoader* loader, const char* path, uint64_t size) {
    ADmaLoadRequest* req = NULL;
    ADmaLoadResult* result = NULL;
    /* Caller-side checks: negative errno. */
    CHECK_RC(ADmaLoader_load(NULL, NULL, &result), -EINVAL, "load(NULL)");
    CHECK_RC(ADmaLoadRequest_create(NULL), -EINVAL, "request create(NULL)");
    CHECK_RC(ADmaLoader_loadFile(loader, "/nonexistent/dmaload/w.bin", NULL, &result), -ENOENT,
             "loadFile(missing)");
    CHECK(strstr(ADmaLoad_lastErrorMessage(), "/nonexistent/dmaload/w.bin") != NULL, "message names the path");

    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "request create");
    CHECK_RC(ADmaLoadRequest_addSegment(req, -1, 0, 0, 0), -EINVAL, "addSegment(-1)");
    CHECK_RC(ADmaLoadRequest_addSegment(req, 1000, 0, 0, 0), -EBADF, "addSegment(closed fd)");
    CHECK_RC(ADmaLoadRequest_addFile(req, "/nonexistent/x", 0, 0, 0, NULL), -ENOENT, "addFile(missing)");
    CHECK_RC(ADmaLoadRequest_setIoMode(req, (ADmaLoadIoMode)7), -EINVAL, "setIoMode(7)");
    CHECK_RC(ADmaLoadRequest_setName(req, NULL), -EINVAL, "setName(NULL)");
    /* Service-side checks: stable positive codes. */
    load_expect(loader, req, DMALOAD_E_BAD_SEGMENTS, "no segments");
    ADmaLoadRequest_release(req);

    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, size + 4096, 4096, 0, NULL);
    load_expect(loader, req, DMALOAD_E_RANGE, "range past EOF");
    ADmaLoadRequest_release(req);

    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 8192, 0, NULL);
    ADmaLoadRequest_addFile(req, path, 0, 8192, 4096, NULL);
    load_expect(loader, req, DMALOAD_E_BAD_SEGMENTS, "overlapping segments");
    ADmaLoadRequest_release(req);

    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL);
    CHECK_RC(ADmaLoadRequest_setBackend(req, "heap:no-such-heap"), DMALOAD_OK, "setBackend");
    load_expect(loader, req, DMALOAD_E_UNKNOWN_BACKEND, "unknown heap");
    ADmaLoadRequest_release(req);

    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 4096, (uint64_t)1 << 50, NULL);
    ADmaLoadRequest_setHeap(req, "memfd");
    load_expect(loader, req, DMALOAD_E_TOO_LARGE, "buffer of 1 PiB");
    ADmaLoadRequest_release(req);

    /* A write-only fd and a directory are not readable regular files. */
    int wfd = open(path, O_WRONLY | O_CLOEXEC);
    ADmaLoadRequest_create(&req);
    CHECK_RC(ADmaLoadRequest_addSegment(req, wfd, 0, 4096, 0), DMALOAD_OK, "addSegment(write-only)");
    close(wfd);
    load_expect(loader, req, DMALOAD_E_BAD_FD, "write-only fd");
    ADmaLoadRequest_release(req);

    int dfd = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addSegment(req, dfd, 0, 4096, 0);
    close(dfd);
    load_expect(loader, req, DMALOAD_E_BAD_FD, "directory fd");
    ADmaLoadRequest_release(req);

    /* Direct I/O demanded on an fd opened without O_DIRECT: the service reads it buffered
     * and reports the fallback. */
    int pfd = open(path, O_RDONLY | O_CLOEXEC);
    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addSegment(req, pfd, 0, 0, 0);
    close(pfd);
    ADmaLoadRequest_setIoMode(req, ADMALOAD_IO_MODE_DIRECT);
    int rc = ADmaLoader_load(loader, req, &result);
    CHECK_RC(rc, DMALOAD_OK, "direct mode, fd without O_DIRECT");
    if (rc == DMALOAD_OK) {
        ADmaLoadStats stats;
        ADmaLoadResult_getStats(result, &stats);
        CHECK(stats.buffered_bytes > 0 && ADmaLoadResult_getFallbackCount(result) > 0,
              "buffered %" PRIu64 " bytes, %zu fallbacks", stats.buffered_bytes,
              ADmaLoadResult_getFallbackCount(result));
        CHECK(ADmaLoadResult_getIoMode(result) != ADMALOAD_IO_MODE_DIRECT, "reported as direct");
        ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(result));
        ADmaLoadResult_release(result);
        result = NULL;
    }
    ADmaLoadRequest_release(req);

    CHECK_RC(ADmaLoader_releaseBuffer(loader, 987654321), DMALOAD_E_NOT_FOUND, "releaseBuffer(unknown)");

    /* The service keeps serving after all of that. */
    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL);
    load_expect(loader, req, DMALOAD_OK, "load after errors");
    ADmaLoadRequest_release(req);
}

/* 10,000 segments of one file (4 KiB each, in reverse order): the request holds one fd. */
static void test_many_segments(ADmaLoader* loader, const char* path) {
    const uint64_t count = 10000, len = 4096;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s", path);
    ADmaLoadRequest* req = NULL;
    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "request create");
    int fds_before = count_open_fds();
    int rc = DMALOAD_OK;
    for (uint64_t i = 0; i < count && rc == DMALOAD_OK; i++) {
        rc = ADmaLoadRequest_addSegment(req, fd, i * len, len, (count - 1 - i) * len);
    }
    CHECK_RC(rc, DMALOAD_OK, "addSegment x 10000");
    CHECK(count_open_fds() == fds_before + 1, "%d fds for one file (before: %d)", count_open_fds(),
          fds_before);
    close(fd);
    ADmaLoadResult* result = NULL;
    rc = ADmaLoader_load(loader, req, &result);
    CHECK_RC(rc, DMALOAD_OK, "load 10000 segments of one file");
    if (rc == DMALOAD_OK) {
        size_t size = (size_t)(count * len);
        uint8_t* p = mmap(NULL, size, PROT_READ, MAP_SHARED, ADmaLoadResult_getFd(result), 0);
        CHECK(p != MAP_FAILED, "mmap");
        if (p != MAP_FAILED) {
            uint64_t bad = count;
            for (uint64_t i = 0; i < count && bad == count; i++) {
                const uint8_t* seg = p + (count - 1 - i) * len;
                for (uint64_t j = 0; j < len; j++) {
                    if (seg[j] != pattern(i * len + j)) {
                        bad = i;
                        break;
                    }
                }
            }
            CHECK(bad == count, "segment %" PRIu64 " differs from the file", bad);
            munmap(p, size);
        }
        ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(result));
        ADmaLoadResult_release(result);
    }
    ADmaLoadRequest_release(req);
}

/* DMALOAD_MAX_FILES distinct files load; the next one fails in the library, before sending. */
static void test_too_many_files(ADmaLoader* loader) {
    ADmaLoadRequest* req = NULL;
    CHECK_RC(ADmaLoadRequest_create(&req), DMALOAD_OK, "request create");
    char* paths[DMALOAD_MAX_FILES + 1];
    int rc = DMALOAD_OK;
    for (int i = 0; i <= DMALOAD_MAX_FILES; i++) {
        char name[32];
        snprintf(name, sizeof name, "dmaload-test-file-%d.bin", i);
        paths[i] = make_file(name, 4096);
        rc = ADmaLoadRequest_addFile(req, paths[i], 0, 4096, (uint64_t)i * 4096, NULL);
        if (i < DMALOAD_MAX_FILES) CHECK_RC(rc, DMALOAD_OK, "addFile");
    }
    CHECK_RC(rc, DMALOAD_E_TOO_MANY_FILES, "addFile of file 65");
    CHECK(strstr(ADmaLoad_lastErrorMessage(), "64") != NULL, "%s", ADmaLoad_lastErrorMessage());
    int fd = open(paths[DMALOAD_MAX_FILES], O_RDONLY | O_CLOEXEC);
    CHECK_RC(ADmaLoadRequest_addSegment(req, fd, 0, 4096, 1 << 20), DMALOAD_E_TOO_MANY_FILES,
             "addSegment of file 65");
    close(fd);
    /* Another segment of a file it has is fine. */
    CHECK_RC(ADmaLoadRequest_addFile(req, paths[0], 0, 4096, 1 << 20, NULL), DMALOAD_OK,
             "addFile of a file it has");
    load_expect(loader, req, DMALOAD_OK, "64 files");
    ADmaLoadRequest_release(req);
    for (int i = 0; i <= DMALOAD_MAX_FILES; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
}

/* A FIFO is refused at once (alarm: a regression that blocks in open() dies instead of hanging). */
static void test_fifo(ADmaLoader* loader) {
    char* fifo = NULL;
    if (asprintf(&fifo, "%s/dmaload-test.fifo", g_dir) < 0) abort();
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    alarm(20);
    ADmaLoadResult* result = NULL;
    CHECK_RC(ADmaLoader_loadFile(loader, fifo, NULL, &result), DMALOAD_E_BAD_FD, "loadFile(FIFO)");
    CHECK(strstr(ADmaLoad_lastErrorMessage(), "FIFO") != NULL, "%s", ADmaLoad_lastErrorMessage());
    ADmaLoadRequest* req = NULL;
    ADmaLoadRequest_create(&req);
    CHECK_RC(ADmaLoadRequest_addFile(req, fifo, 0, 0, 0, NULL), DMALOAD_E_BAD_FD, "addFile(FIFO)");
    CHECK_RC(ADmaLoadRequest_addFile(req, "/dev/zero", 0, 0, 0, NULL), DMALOAD_E_BAD_FD,
             "addFile(/dev/zero)");
    alarm(0);
    ADmaLoadRequest_release(req);
    unlink(fifo);
    free(fifo);
}

/*
 * The digest `tool` prints for `path` ("HEX  path" as sha256sum, "sha256:HEX path" as
 * `fsverity digest`), into `out`. 0 when the tool is missing or prints something else.
 */
static int tool_digest(const char* tool, const char* path, uint8_t out[DMALOAD_DIGEST_BYTES]) {
    char* command = NULL;
    if (asprintf(&command, "%s '%s' 2>&1", tool, path) < 0) abort();
    FILE* p = popen(command, "r");
    free(command);
    if (!p) return 0;
    char line[512] = "";
    char* got = fgets(line, sizeof line, p);
    int status = pclose(p);
    if (!got || status != 0) {
        fprintf(stderr, "%s %s: %s", tool, path, line);
        return 0;
    }
    const char* hex = strncmp(line, "sha256:", 7) == 0 ? line + 7 : line;
    for (int i = 0; i < DMALOAD_DIGEST_BYTES; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return 0;
        out[i] = (uint8_t)byte;
    }
    return 1;
}

static void print_hex(const char* label, const uint8_t* bytes) {
    printf("  %-34s ", label);
    for (int i = 0; i < DMALOAD_DIGEST_BYTES; i++) printf("%02x", bytes[i]);
    printf("\n");
}

/* Digests computed by the service while it loads, and a load refused for a wrong one. */
static void test_digests(ADmaLoader* loader, const char* path) {
    uint8_t sha[DMALOAD_DIGEST_BYTES], verity[DMALOAD_DIGEST_BYTES];
    CHECK(tool_digest("sha256sum", path, sha), "sha256sum %s", path);
    CHECK(tool_digest("fsverity digest", path, verity),
          "fsverity digest %s (apt-get install fsverity)", path);
    ADmaLoadRequest* req = NULL;
    ADmaLoadResult* result = NULL;
    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL);
    CHECK_RC(ADmaLoadRequest_addDigest(req, ADMALOAD_DIGEST_SHA256), DMALOAD_OK, "addDigest(sha256)");
    CHECK_RC(ADmaLoadRequest_addDigest(req, ADMALOAD_DIGEST_FSVERITY_SHA256), DMALOAD_OK,
             "addDigest(fsverity)");
    CHECK_RC(ADmaLoadRequest_addDigest(req, ADMALOAD_DIGEST_SHA256), DMALOAD_OK, "addDigest twice");
    CHECK_RC(ADmaLoadRequest_addDigest(req, (ADmaLoadDigestAlgorithm)7), -EINVAL, "addDigest(7)");
    int rc = ADmaLoader_load(loader, req, &result);
    CHECK_RC(rc, DMALOAD_OK, "load with digests");
    if (rc == DMALOAD_OK) {
        CHECK(ADmaLoadResult_getDigestCount(result) == 2, "%zu digests",
              ADmaLoadResult_getDigestCount(result));
        for (size_t i = 0; i < ADmaLoadResult_getDigestCount(result); i++) {
            size_t segment = 99;
            ADmaLoadDigestAlgorithm algorithm = 0;
            bool from_kernel = true;
            const uint8_t* value =
                ADmaLoadResult_getDigest(result, i, &segment, &algorithm, &from_kernel);
            CHECK(value != NULL && segment == 0 && !from_kernel, "digest %zu", i);
            const uint8_t* want = algorithm == ADMALOAD_DIGEST_SHA256 ? sha : verity;
            CHECK(value && memcmp(value, want, DMALOAD_DIGEST_BYTES) == 0,
                  "digest %zu (algorithm %d) differs from the tool's", i, (int)algorithm);
            if (value) print_hex(algorithm == ADMALOAD_DIGEST_SHA256 ? "sha256" : "fsverity", value);
        }
        CHECK(ADmaLoadResult_getDigest(result, 2, NULL, NULL, NULL) == NULL, "out of range");
        CHECK(ADmaLoadResult_getDigestTimeNs(result) > 0, "digest time");
        /* The digests' state is working memory, charged while the load ran. */
        CHECK(ADmaLoadResult_getWorkingBytes(result) > 0, "working bytes %llu",
              (unsigned long long)ADmaLoadResult_getWorkingBytes(result));
        ADmaLoader_releaseBuffer(loader, ADmaLoadResult_getBufferId(result));
        ADmaLoadResult_release(result);
        result = NULL;
    }
    ADmaLoadRequest_release(req);

    /* Expected digests: the right ones pass, a wrong one hands nothing out. */
    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL);
    CHECK_RC(ADmaLoadRequest_expectDigest(req, 0, ADMALOAD_DIGEST_SHA256, NULL, 32), -EINVAL,
             "expectDigest(NULL)");
    CHECK_RC(ADmaLoadRequest_expectDigest(req, 0, ADMALOAD_DIGEST_SHA256, sha, 31), -EINVAL,
             "expectDigest(31 bytes)");
    CHECK_RC(ADmaLoadRequest_expectDigest(req, 0, ADMALOAD_DIGEST_SHA256, sha, sizeof sha), DMALOAD_OK,
             "expectDigest(sha256)");
    CHECK_RC(ADmaLoadRequest_expectDigest(req, 0, ADMALOAD_DIGEST_FSVERITY_SHA256, verity, sizeof verity),
             DMALOAD_OK, "expectDigest(fsverity)");
    load_expect(loader, req, DMALOAD_OK, "the expected digests");
    uint8_t wrong[DMALOAD_DIGEST_BYTES];
    memcpy(wrong, verity, sizeof wrong);
    wrong[7] ^= 0x10;
    ADmaLoadRequest_expectDigest(req, 0, ADMALOAD_DIGEST_FSVERITY_SHA256, wrong, sizeof wrong);
    int fds = count_open_fds();
    load_expect(loader, req, DMALOAD_E_DIGEST_MISMATCH, "a wrong fs-verity digest");
    CHECK(strstr(ADmaLoad_lastErrorMessage(), "segment 0") != NULL, "message names the segment");
    CHECK(count_open_fds() == fds, "fds after the mismatch: %d, before %d", count_open_fds(), fds);
    ADmaLoadRequest_release(req);

    ADmaLoadRequest_create(&req);
    ADmaLoadRequest_addFile(req, path, 0, 0, 0, NULL);
    ADmaLoadRequest_expectDigest(req, 1, ADMALOAD_DIGEST_SHA256, sha, sizeof sha);
    load_expect(loader, req, DMALOAD_E_INVALID_ARGUMENT, "a digest of a segment it lacks");
    ADmaLoadRequest_release(req);
}

static void test_names(void) {
    ADmaLoadRequest* req = NULL;
    ADmaLoadRequest_create(&req);
    char name[DMALOAD_MAX_NAME_BYTES + 2];
    memset(name, 'n', sizeof name);
    name[DMALOAD_MAX_NAME_BYTES] = '\0';
    CHECK_RC(ADmaLoadRequest_setName(req, name), DMALOAD_OK, "setName(200 bytes)");
    name[DMALOAD_MAX_NAME_BYTES] = 'n';
    name[DMALOAD_MAX_NAME_BYTES + 1] = '\0';
    CHECK_RC(ADmaLoadRequest_setName(req, name), -EINVAL, "setName(201 bytes)");
    ADmaLoadRequest_release(req);
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [ENDPOINT]\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    g_endpoint = argc > 2 ? argv[2] : NULL;
    const uint64_t small = 3 * 1024 * 1024 + 1234; /* odd size: an unaligned tail */
    const uint64_t big = (uint64_t)64 << 20;
    char* small_path = make_file("dmaload-test-small.bin", small);
    char* big_path = make_file("dmaload-test-big.bin", big);
    test_error_strings();
    test_connect_errors();
    /* Process-wide binder state (kernel binder keeps /dev/binder open for the process) is set
     * up by the first loader; count fds after that, so the check sees only per-handle fds. */
    ADmaLoader* loader = NULL;
    if (ADmaLoader_create(g_endpoint, &loader) == DMALOAD_OK) ADmaLoader_release(loader);
    loader = NULL;
    int fds_before = count_open_fds();
    int rc = ADmaLoader_create(g_endpoint, &loader);
    CHECK_RC(rc, DMALOAD_OK, "ADmaLoader_create");
    if (rc == DMALOAD_OK) {
        /* A second loader in the same process works independently. */
        ADmaLoader* other = NULL;
        CHECK_RC(ADmaLoader_create(g_endpoint, &other), DMALOAD_OK, "second loader");
        printf("heaps:\n");
        test_heaps(loader);
        printf("load file:\n");
        test_load_file(other ? other : loader, small_path, small);
        ADmaLoader_release(other);
        printf("segments:\n");
        test_segments(loader, big_path);
        printf("shareable:\n");
        test_shareable(loader, small_path, small);
        printf("async:\n");
        test_async(loader, big_path, big);
        printf("cancel:\n");
        test_cancel(loader, big_path);
        printf("errors:\n");
        test_error_paths(loader, small_path, small);
        printf("many segments:\n");
        test_many_segments(loader, big_path);
        printf("too many files:\n");
        test_too_many_files(loader);
        printf("FIFO:\n");
        test_fifo(loader);
        printf("digests:\n");
        test_digests(loader, small_path);
        test_names();
        ADmaLoader_release(loader);
    }
    int fds_after = count_open_fds();
    CHECK(fds_after == fds_before, "fd leak: %d open before, %d after releasing every handle", fds_before,
          fds_after);
    unlink(small_path);
    unlink(big_path);
    free(small_path);
    free(big_path);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
