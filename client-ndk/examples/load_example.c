/*
 * Copyright 2026 The dmaload Authors
 * SPDX-License-Identifier: Apache-2.0
 *
 * A complete libdmaload example: load a model file in two segments into one buffer,
 * asynchronously with a progress report, then read its first bytes through mmap.
 *
 *   load_example FILE [HEAP]
 *
 * Build (Linux):  cc -I client-ndk/include load_example.c -L target/debug -ldmaload
 */

#include <dmaload.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Runs on a library thread: keep it short. */
static void on_progress(void* userData, uint64_t loaded, uint64_t total) {
    (void)userData;
    fprintf(stderr, "\r%3d%%", total ? (int)(loaded * 100 / total) : 0);
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [HEAP]\n", argv[0]);
        return 2;
    }
    const char* path = argv[1];
    const char* heap = argc > 2 ? argv[2] : NULL;
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size < 2) {
        perror(path);
        return 1;
    }
    uint64_t half = (uint64_t)st.st_size / 2;

    ADmaLoader* loader = NULL;
    int rc = ADmaLoader_create(NULL, &loader);
    if (rc != DMALOAD_OK) {
        fprintf(stderr, "connect: %s: %s\n", ADmaLoad_errorString(rc), ADmaLoad_lastErrorMessage());
        return 1;
    }

    /* The file's second half first, then its first half: segments place any file range
     * anywhere in the buffer. addFile opens with O_DIRECT (falling back where refused). */
    ADmaLoadRequest* request = NULL;
    bool direct = false;
    if ((rc = ADmaLoadRequest_create(&request)) != DMALOAD_OK ||
        (rc = ADmaLoadRequest_addFile(request, path, half, st.st_size - half, 0, &direct)) != DMALOAD_OK ||
        (rc = ADmaLoadRequest_addFile(request, path, 0, half, st.st_size - half, NULL)) != DMALOAD_OK ||
        (rc = ADmaLoadRequest_setHeap(request, heap)) != DMALOAD_OK ||
        (rc = ADmaLoadRequest_setName(request, "example-weights")) != DMALOAD_OK) {
        fprintf(stderr, "request: %s: %s\n", ADmaLoad_errorString(rc), ADmaLoad_lastErrorMessage());
        ADmaLoadRequest_release(request);
        ADmaLoader_release(loader);
        return 1;
    }
    if (!direct) fprintf(stderr, "note: %s's file system refuses O_DIRECT; reading buffered\n", path);

    /* Asynchronous load without onComplete: the result stays with the task for wait(). */
    ADmaLoadCallbacks callbacks = {.onProgress = on_progress, .onComplete = NULL};
    ADmaLoadTask* task = NULL;
    ADmaLoadResult* result = NULL;
    rc = ADmaLoader_loadAsync(loader, request, &callbacks, NULL, &task);
    if (rc == DMALOAD_OK) rc = ADmaLoadTask_wait(task, &result);
    ADmaLoadTask_release(task);
    ADmaLoadRequest_release(request); /* closes the request's own fds */
    fprintf(stderr, "\n");
    if (rc != DMALOAD_OK) {
        fprintf(stderr, "load: %s: %s\n", ADmaLoad_errorString(rc), ADmaLoad_lastErrorMessage());
        ADmaLoader_release(loader);
        return 1;
    }

    ADmaLoadStats stats;
    ADmaLoadResult_getStats(result, &stats);
    printf("%llu bytes in %s buffer \"%s\" (id %lld): %.1f ms, %llu bytes direct, %llu buffered\n",
           (unsigned long long)ADmaLoadResult_getSize(result), ADmaLoadResult_getBackend(result),
           ADmaLoadResult_getName(result), (long long)ADmaLoadResult_getBufferId(result),
           stats.total_ns / 1e6, (unsigned long long)stats.direct_bytes,
           (unsigned long long)stats.buffered_bytes);
    for (size_t i = 0; i < ADmaLoadResult_getFallbackCount(result); i++) {
        printf("fallback: %s\n", ADmaLoadResult_getFallback(result, i));
    }

    int fd = -1;
    ADmaLoadResult_takeFd(result, &fd); /* ours now: we close it */
    int64_t buffer_id = ADmaLoadResult_getBufferId(result);
    size_t size = (size_t)ADmaLoadResult_getSize(result);
    ADmaLoadResult_release(result);

    /* CPU access to a dma-buf is bracketed by DMA_BUF_IOCTL_SYNC (a memfd buffer answers
     * ENOTTY and needs none). */
    unsigned char* bytes = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (bytes != MAP_FAILED) {
        struct dma_buf_sync sync = {.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ};
        int synced = ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync) == 0;
        printf("first bytes: %02x %02x %02x %02x\n", bytes[0], bytes[1], bytes[2], bytes[3]);
        if (synced) {
            sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
            ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync);
        }
        munmap(bytes, size);
    }

    /* ... hand fd to the accelerator driver here ... */

    close(fd);
    ADmaLoader_releaseBuffer(loader, buffer_id); /* end the service's charge */
    ADmaLoader_release(loader);
    return 0;
}
