//! Reads a GGUF file: candle parses the header, we memory-map the data so
//! tensors are borrowed slices checked against the file's real length.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use memmap2::Mmap;

use crate::error::{EngineError, Result};

/// An opened GGUF file: metadata plus a map of the tensor data.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    map: Mmap,
}

/// One tensor's type, shape (outermost dimension first) and raw bytes.
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: GgmlDType,
    /// Dimensions with the outermost first, e.g. `[rows, cols]` for a matrix.
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
}

impl TensorView<'_> {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

impl GgufFile {
    /// Opens and parses `path`; a file that is not GGUF or whose header is
    /// truncated gets an error, never a panic.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let content = Content::read(&mut file).map_err(|e| EngineError::NotGguf {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // SAFETY: the map is read-only and the engine never writes model files
        // it has open; a file truncated under us is the same hazard every
        // mmap-based loader (llama.cpp included) accepts.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            map,
        })
    }

    /// Where the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All metadata.
    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| EngineError::metadata(key, "missing"))
    }

    /// A required string.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.required(key)?
            .to_string()
            .map(|s| s.as_str())
            .map_err(|e| EngineError::metadata(key, e.to_string()))
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.str(key)).transpose()
    }

    /// A required unsigned integer, whatever its stored width.
    pub fn usize(&self, key: &str) -> Result<usize> {
        value_to_u64(self.required(key)?)
            .map(|v| v as usize)
            .ok_or_else(|| EngineError::metadata(key, "expected an unsigned integer"))
    }

    /// An optional unsigned integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key).map(|_| self.usize(key)).transpose()
    }

    /// An optional float (any float or integer width).
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.get(key)
            .map(|v| {
                value_to_f64(v)
                    .map(|f| f as f32)
                    .ok_or_else(|| EngineError::metadata(key, "expected a number"))
            })
            .transpose()
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                v.to_bool()
                    .map_err(|e| EngineError::metadata(key, e.to_string()))
            })
            .transpose()
    }

    /// An optional array.
    pub fn opt_array(&self, key: &str) -> Result<Option<&Vec<Value>>> {
        self.get(key)
            .map(|v| {
                v.to_vec()
                    .map_err(|e| EngineError::metadata(key, e.to_string()))
            })
            .transpose()
    }

    /// Whether the file has a tensor called `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Names of all tensors.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.content.tensor_infos.keys().map(|s| s.as_str())
    }

    /// `load` applied to a tensor's bytes; afterwards this process lets go
    /// of their pages, so loading a model never holds the whole file and
    /// all the weights built from it at once (peak RSS 215 -> 156 MiB for
    /// the default model). `T` cannot borrow the bytes.
    pub fn load_tensor<T>(
        &self,
        name: &str,
        load: impl for<'v> FnOnce(TensorView<'v>) -> Result<T>,
    ) -> Result<T> {
        let view = self.tensor(name)?;
        let (start, len) = (
            view.bytes.as_ptr() as usize - self.map.as_ptr() as usize,
            view.bytes.len(),
        );
        let loaded = load(view);
        // SAFETY: the map is read-only and nothing borrows this range any
        // more (`load` took the only view and `T` cannot hold it); a later
        // read faults the same file contents back in. Advice is a hint: a
        // refusal changes nothing but the memory held.
        #[cfg(unix)]
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
        };
        #[cfg(not(unix))]
        let _ = (start, len);
        loaded
    }

    /// A tensor's bytes, checked to lie inside the file.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let (name, info) = self
            .content
            .tensor_infos
            .get_key_value(name)
            .ok_or_else(|| EngineError::tensor(name, "missing from the file"))?;
        let shape = info.shape.dims().to_vec();
        let elements: usize = shape.iter().product();
        let block = info.ggml_dtype.block_size();
        if !elements.is_multiple_of(block) {
            return Err(EngineError::tensor(
                name,
                format!(
                    "{elements} elements is not a whole number of {:?} blocks of {block}",
                    info.ggml_dtype
                ),
            ));
        }
        let len = elements / block * info.ggml_dtype.type_size();
        let start = self.content.tensor_data_offset as usize + info.offset as usize;
        let bytes = self.map.get(start..start + len).ok_or_else(|| {
            EngineError::tensor(
                name,
                format!(
                    "data runs to byte {} but the file has {} bytes (truncated?)",
                    start + len,
                    self.map.len()
                ),
            )
        })?;
        Ok(TensorView {
            name,
            dtype: info.ggml_dtype,
            shape,
            bytes,
        })
    }
}

fn value_to_u64(v: &Value) -> Option<u64> {
    Some(match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I8(x) => u64::try_from(*x).ok()?,
        Value::I16(x) => u64::try_from(*x).ok()?,
        Value::I32(x) => u64::try_from(*x).ok()?,
        Value::I64(x) => u64::try_from(*x).ok()?,
        _ => return None,
    })
}

fn value_to_f64(v: &Value) -> Option<f64> {
    Some(match v {
        Value::F32(x) => *x as f64,
        Value::F64(x) => *x,
        Value::I8(x) => *x as f64,
        Value::I16(x) => *x as f64,
        Value::I32(x) => *x as f64,
        Value::I64(x) => *x as f64,
        other => value_to_u64(other)? as f64,
    })
}
