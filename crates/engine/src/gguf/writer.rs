//! Streams a GGUF v3 file: the header is written from tensor *specs*, then
//! each tensor's bytes are appended in order, so a 70B-shaped file never has
//! to sit in memory.

use std::io::Write;

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;

const ALIGNMENT: u64 = 32;

/// A tensor to be written: its name, type and shape (outermost first).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: GgmlDType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Size of the tensor's data in bytes.
    pub fn byte_len(&self) -> u64 {
        let elements: usize = self.shape.iter().product();
        (elements / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
}

/// Writes tensors' data in the order of the specs given to [`GgufWriter::new`].
pub struct GgufWriter<W: Write> {
    out: W,
    specs: Vec<TensorSpec>,
    next: usize,
    written_in_current: u64,
}

impl<W: Write> GgufWriter<W> {
    /// Writes the header (metadata and tensor table) and gets ready for data.
    pub fn new(
        mut out: W,
        metadata: &[(String, Value)],
        specs: Vec<TensorSpec>,
    ) -> std::io::Result<Self> {
        let mut header = Vec::new();
        header.extend_from_slice(&0x4655_4747u32.to_le_bytes());
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(specs.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata {
            write_str(&mut header, key);
            header.extend_from_slice(&value_type(value).to_le_bytes());
            write_value(&mut header, value);
        }
        let mut offset = 0u64;
        for spec in &specs {
            write_str(&mut header, &spec.name);
            header.extend_from_slice(&(spec.shape.len() as u32).to_le_bytes());
            // GGUF lists dimensions innermost first.
            for dim in spec.shape.iter().rev() {
                header.extend_from_slice(&(*dim as u64).to_le_bytes());
            }
            header.extend_from_slice(&dtype_id(spec.dtype).to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset += padded(spec.byte_len());
        }
        let pad = padded(header.len() as u64) - header.len() as u64;
        header.resize(header.len() + pad as usize, 0);
        out.write_all(&header)?;
        Ok(Self {
            out,
            specs,
            next: 0,
            written_in_current: 0,
        })
    }

    /// Appends bytes of the current tensor; may be called many times per
    /// tensor. Moves to the next tensor once this one is complete.
    pub fn write_data(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let spec = self.specs.get(self.next).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "all tensors already written",
            )
        })?;
        let total = spec.byte_len();
        if self.written_in_current + bytes.len() as u64 > total {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("tensor {} takes {total} bytes, got more", spec.name),
            ));
        }
        self.out.write_all(bytes)?;
        self.written_in_current += bytes.len() as u64;
        if self.written_in_current == total {
            let pad = padded(total) - total;
            self.out.write_all(&vec![0u8; pad as usize])?;
            self.next += 1;
            self.written_in_current = 0;
        }
        Ok(())
    }

    /// Checks every tensor was written and flushes.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.next != self.specs.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("only {} of {} tensors written", self.next, self.specs.len()),
            ));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn padded(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// GGUF's numbering of ggml types (ggml.h), which candle keeps private.
pub(crate) fn dtype_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            // An empty array still needs an element type; u8 is as good as any.
            let elem = items.first().map(value_type).unwrap_or(0);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
    }
}
