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

import vendor.dmaload.LoadResult;

/** Progress and completion of an asynchronous load. Exactly one of onComplete/onError ends it. */
@VintfStability
oneway interface ILoadCallback {
    /** Bytes of file data in the buffer so far; monotonic, ends at |totalBytes|. */
    void onProgress(long loadedBytes, long totalBytes);
    void onComplete(in LoadResult result);
    /** |errorCode| is an ErrorCode; |message| says what was wrong. */
    void onError(int errorCode, @utf8InCpp String message);
}
