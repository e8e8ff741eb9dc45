//! The parcel-decoding property's harness, shared by the seeded property test (group
//! `parcel-decoding`, proptest) and the fuzz target (`fuzz/`): the service's request types
//! decoded from untrusted parcel bytes by the binder stack's generated code (the same code the
//! service runs).
//! * `check_round_trip`: a valid request (every field, segments without fds) encodes and
//!   decodes back unchanged;
//! * `check_decode`: any bytes decode to a value or an error, never a panic; a value that
//!   decodes re-encodes to bytes that decode to the same value.

// The binder stack's parcel code (rsbinder on Linux, libbinder_rs under Soong) through the
// client crate's seam.
use dmaload_client::binder_stack::idl::{
    FileSegment::FileSegment, IoMode::IoMode, LoadRequest::LoadRequest, Tunables::Tunables,
};
use dmaload_client::binder_stack::{from_parcel_bytes, to_parcel_bytes};

/// Request fields: segments (file offset, length, buffer offset), backend, io mode, name,
/// tunables (gather size, chunk size, reader threads).
pub type Fields = (Vec<(i64, i64, i64)>, String, i32, String, (i64, i64, i32));

/// Changes applied to encoded bytes.
#[derive(Clone, Debug)]
pub enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    /// Length and count fields are i32s at 4-byte offsets.
    SetI32(usize, i32),
    Random(Vec<u8>),
}

pub fn build(v: &Fields) -> LoadRequest {
    LoadRequest {
        r#segments: v
            .0
            .iter()
            .map(|&(o, l, b)| FileSegment {
                r#fd: None,
                r#fileOffset: o,
                r#length: l,
                r#bufferOffset: b,
                ..Default::default()
            })
            .collect(),
        r#backend: v.1.clone(),
        r#ioMode: IoMode(v.2),
        r#name: v.3.clone(),
        r#tunables: Tunables {
            r#gatherSize: v.4 .0,
            r#chunkSize: v.4 .1,
            r#readerThreads: v.4 .2,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn same_segment(x: &FileSegment, y: &FileSegment) -> bool {
    x.r#fd.is_some() == y.r#fd.is_some()
        && x.r#fileOffset == y.r#fileOffset
        && x.r#length == y.r#length
        && x.r#bufferOffset == y.r#bufferOffset
}

/// Every field equal (fds by presence: bytes without a session carry none).
pub fn same(a: &LoadRequest, b: &LoadRequest) -> bool {
    let (t, u) = (&a.r#tunables, &b.r#tunables);
    a.r#segments.len() == b.r#segments.len()
        && a.r#segments
            .iter()
            .zip(&b.r#segments)
            .all(|(x, y)| same_segment(x, y))
        && a.r#backend == b.r#backend
        && a.r#ioMode == b.r#ioMode
        && a.r#name == b.r#name
        && t.r#gatherSize == u.r#gatherSize
        && t.r#chunkSize == u.r#chunkSize
        && t.r#readerThreads == u.r#readerThreads
        && t.r#populateThreads == u.r#populateThreads
        && t.r#bounceBuffers == u.r#bounceBuffers
}

pub fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = bytes.len().max(1);
    match m {
        Mutation::Truncate(i) => bytes.truncate(i % n),
        Mutation::Flip(i, b) => {
            if !bytes.is_empty() {
                bytes[i % n] ^= b | 1;
            }
        }
        Mutation::Insert(i, v) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::SetI32(i, v) => {
            let at = (i % n) & !3;
            if at + 4 <= bytes.len() {
                bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        Mutation::Random(v) => bytes = v.clone(),
    }
    bytes
}

/// `req` encodes and decodes back unchanged; returns the encoded bytes.
pub fn check_round_trip(req: &LoadRequest) -> Result<Vec<u8>, String> {
    let bytes = to_parcel_bytes(req).map_err(|e| format!("encode: {e:?}"))?;
    let back: LoadRequest = from_parcel_bytes(&bytes).map_err(|e| format!("round trip: {e:?}"))?;
    if !same(req, &back) {
        return Err(format!(
            "round trip changed the request: {req:?} became {back:?}"
        ));
    }
    Ok(bytes)
}

/// Decoding `bytes` as each request type returns (a panic or abort is the failure); a
/// request that decodes survives a second round trip unchanged.
pub fn check_decode(bytes: &[u8]) -> Result<(), String> {
    if let Ok(req) = from_parcel_bytes::<LoadRequest>(bytes) {
        check_round_trip(&req).map_err(|e| format!("decoded from {bytes:02x?}: {e}"))?;
    }
    if let Ok(seg) = from_parcel_bytes::<FileSegment>(bytes) {
        let again = to_parcel_bytes(&seg)
            .ok()
            .and_then(|b| from_parcel_bytes::<FileSegment>(&b).ok());
        if !again.as_ref().is_some_and(|a| same_segment(&seg, a)) {
            return Err(format!(
                "segment decoded from {bytes:02x?} does not round-trip: {seg:?} became {again:?}"
            ));
        }
    }
    let _ = from_parcel_bytes::<Tunables>(bytes);
    Ok(())
}
