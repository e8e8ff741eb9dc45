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

/** How the service reads the client's file. */
@VintfStability
@Backing(type="int")
enum IoMode {
    /** Direct when the fd was opened with O_DIRECT and its file system supports it. */
    AUTO = 0,
    /** Direct I/O required; where the file system has none, reads fall back (reported). */
    DIRECT = 1,
    /** Buffered reads; the pages read are dropped from the page cache afterwards. */
    BUFFERED = 2,
}
