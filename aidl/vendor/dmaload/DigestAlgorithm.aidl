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

/** Version 2: how a segment's bytes are digested. */
@VintfStability
@Backing(type="int")
enum DigestAlgorithm {
    /** SHA-256 of the segment's bytes (what `sha256sum` prints for a whole file). */
    SHA256 = 1,
    /**
     * The fs-verity file digest of the segment's bytes (SHA-256 Merkle tree over 4 KiB blocks,
     * what `fsverity digest` prints for a whole file; a segment is digested as if its bytes
     * were a file of their own).
     */
    FSVERITY_SHA256 = 2,
}
