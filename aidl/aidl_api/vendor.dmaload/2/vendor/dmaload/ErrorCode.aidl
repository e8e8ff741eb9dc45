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
///////////////////////////////////////////////////////////////////////////////
// THIS FILE IS IMMUTABLE. DO NOT EDIT IN ANY CASE.                          //
///////////////////////////////////////////////////////////////////////////////

// This file is a snapshot of an AIDL file. Do not edit it manually. There are
// two cases:
// 1). this is a frozen version file - do not edit this in any case.
// 2). this is a 'current' file. If you make a backwards compatible change to
//     the interface (from the latest frozen version), the build system will
//     prompt you to update this file with `m <name>-update-api`.
//
// You must not make a backward incompatible change to any AIDL file built
// with the aidl_interface module type with versions property set. The module
// type is used to build AIDL files in a way that they can be used across
// independently updatable components of the system. If a device is shipped
// with such a backward incompatible change, it has a high risk of breaking
// later when a module using the interface is updated, e.g., Mainline modules.

package vendor.dmaload;
@Backing(type="int") @VintfStability
enum ErrorCode {
  INVALID_ARGUMENT = 1,
  BAD_FD = 2,
  RANGE = 3,
  BAD_SEGMENTS = 4,
  UNKNOWN_BACKEND = 5,
  BACKEND_NOT_ALLOWED = 6,
  TOO_LARGE = 7,
  GLOBAL_CAP = 8,
  CALLER_CAP = 9,
  BUSY = 10,
  NO_MEMORY = 11,
  IO = 12,
  FILE_CHANGED = 13,
  CANCELLED = 14,
  PERMISSION_DENIED = 15,
  NOT_FOUND = 16,
  INTERNAL = 17,
  TOO_MANY_FILES = 18,
  DIGEST_MISMATCH = 19,
}
