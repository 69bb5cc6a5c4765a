//! GGUF files: reading (metadata and tensor bytes, via candle's parser over a
//! memory map) and streaming writing (for synthetic test models).

mod reader;
mod writer;

pub use candle_core::quantized::gguf_file::Value;
pub use candle_core::quantized::GgmlDType;
pub use reader::{GgufFile, TensorView};
pub use writer::{GgufWriter, TensorSpec};
