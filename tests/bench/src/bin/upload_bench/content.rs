//! The uploaded bytes.

use bytes::{Bytes, BytesMut};

use crate::{CHUNK, MIB};

/// The file's bytes, made on demand from a fixed 1 MiB pseudo-random block with the chunk
/// index stamped in, so chunks differ and nothing expensive runs on the client path.
#[derive(Clone)]
pub struct Content {
    pub size_mib: u64,
    pub block: Bytes,
}

impl Content {
    pub fn new(size_mib: u64) -> Content {
        let mut block = Vec::with_capacity(CHUNK);
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        while block.len() < CHUNK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            block.extend_from_slice(&state.to_le_bytes());
        }
        Content {
            size_mib,
            block: Bytes::from(block),
        }
    }

    /// Chunk `index` (1 MiB); chunk 0 starts with a PDF signature so document-store accepts it.
    pub fn chunk(&self, index: u64) -> Bytes {
        let mut chunk = BytesMut::from(&self.block[..]);
        chunk[16..24].copy_from_slice(&index.to_le_bytes());
        if index == 0 {
            chunk[..9].copy_from_slice(b"%PDF-1.7\n");
        }
        chunk.freeze()
    }

    /// `count` chunks from `first` on, as one multipart part (short at the end of the file).
    pub fn part(&self, first: u64, count: u64) -> Bytes {
        let last = (first + count).min(self.size_mib);
        let mut part = BytesMut::with_capacity(((last - first) * MIB) as usize);
        for index in first..last {
            part.extend_from_slice(&self.chunk(index));
        }
        part.freeze()
    }
}
