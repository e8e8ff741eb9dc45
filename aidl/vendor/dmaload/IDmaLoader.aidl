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

import vendor.dmaload.BackendInfo;
import vendor.dmaload.CallerUsage;
import vendor.dmaload.ILoadCallback;
import vendor.dmaload.ILoadHandle;
import vendor.dmaload.LoadRequest;
import vendor.dmaload.LoadResult;
import vendor.dmaload.ServiceState;

/**
 * Loads files into dma-bufs. The buffer is handed out only once every byte is in.
 * Errors are ServiceSpecificExceptions with an ErrorCode and a message.
 *
 * A buffer stays charged to the caller's uid until releaseBuffer() or the caller's death,
 * whichever comes first; closing the fd frees the memory but not the charge.
 */
@VintfStability
interface IDmaLoader {
    /**
     * Version 2: most distinct files one request may name (LoadRequest.files); fits every
     * binder transport the service is reached by. More: TOO_MANY_FILES.
     */
    const int MAX_FILES = 64;
    /** Version 2: longest LoadRequest.name in bytes; longer: INVALID_ARGUMENT. */
    const int MAX_NAME_BYTES = 200;

    /** Loads and blocks until done. */
    LoadResult load(in LoadRequest request);
    /** Starts a load; |callback| gets progress and the result. Dies with the caller. */
    ILoadHandle startLoad(in LoadRequest request, ILoadCallback callback);
    /** Drops the charge of a buffer returned by load()/startLoad(). NOT_FOUND if unknown. */
    void releaseBuffer(long bufferId);
    /** The backends this device offers, with their limits. */
    BackendInfo[] getBackends();
    /** The calling uid's usage. */
    CallerUsage getUsage();
    /**
     * The read-only views dumpsys shows (same text, same arguments; "--help" lists them),
     * for clients that have no dumpsys (the dmaload CLI, tests).
     */
    @utf8InCpp String debugDump(in @utf8InCpp String[] args);
    /**
     * The service's own resources, so tests can check that a bad request leaked nothing. Every
     * caller's activity is in it: since version 2 only root, system and shell may call it
     * (others get PERMISSION_DENIED; getUsage() shows a caller its own).
     */
    ServiceState getServiceState();
}
