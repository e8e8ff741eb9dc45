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

/**
 * One range of one file, placed at an offset in the buffer.
 *
 * The service reads the file as it is: it never re-opens it and never changes its flags, so
 * open the file with O_RDONLY | O_DIRECT for direct I/O.
 *
 * Version 1 layout: every segment carries its file in |fd|. Version 2 layout: the request's
 * distinct files travel once in LoadRequest.files and each segment names its file with
 * |fileIndex|, leaving |fd| null.
 */
@VintfStability
parcelable FileSegment {
    /** A regular file open for reading. Required when |fileIndex| is -1, null otherwise. */
    @nullable ParcelFileDescriptor fd;
    /** Byte offset in the file; >= 0. */
    long fileOffset;
    /** Bytes to read; 0 means "to the end of the file". */
    long length;
    /** Where the bytes go in the buffer; >= 0. Segments must not overlap. */
    long bufferOffset;
    /**
     * Version 2: index of this segment's file in LoadRequest.files, or -1 (the default, and
     * what a version 1 client sends) when the file is in |fd|.
     */
    int fileIndex = -1;
}
