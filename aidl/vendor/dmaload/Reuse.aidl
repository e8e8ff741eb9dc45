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

/** Version 2: where a result's buffer came from (LoadRequest.shareable). */
@VintfStability
@Backing(type="int")
enum Reuse {
    /** Loaded for this request. */
    NONE = 0,
    /** An identical load was in flight; this request waited for it instead of loading again. */
    COALESCED = 1,
    /** A live buffer another shareable request of this uid holds: no I/O, no new memory. */
    SHARED = 2,
    /** A buffer kept warm after its release: no I/O, no new memory. */
    CACHED = 3,
}
