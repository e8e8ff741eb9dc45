//! A request's segment as the engine and the client library both name it: one range of one
//! of the request's files and where it lands in the buffer (the AIDL `FileSegment`, with the
//! file as an index into the request's file table).

/// One range of one of the request's files, placed at an offset of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The file: an index into the request's distinct files.
    pub file: usize,
    pub file_offset: u64,
    /// Bytes to load; 0 means "to the end of the file".
    pub length: u64,
    pub buffer_offset: u64,
}

impl Segment {
    /// The whole of file `file` at the start of the buffer.
    pub fn whole_file(file: usize) -> Segment {
        Segment {
            file,
            file_offset: 0,
            length: 0,
            buffer_offset: 0,
        }
    }
}
