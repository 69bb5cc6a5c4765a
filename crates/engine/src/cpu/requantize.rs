//! Converting a weight matrix to another GGUF type at load time, so one
//! model file yields several deployments (`serve --quantize q8_0`).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::matmul::{Matrix, Role};
use crate::error::{EngineError, Result};

impl Matrix {
    /// This matrix stored as `dtype`: dequantized to f32, then quantized
    /// with candle's (llama.cpp-compatible) reference quantizers.
    pub fn requantize(self, name: &str, dtype: GgmlDType) -> Result<Self> {
        if dtype == self.dtype() {
            return Ok(self);
        }
        let (rows, cols) = (self.rows(), self.cols());
        if !cols.is_multiple_of(dtype.block_size()) {
            return Err(EngineError::tensor(
                name,
                format!(
                    "cannot store rows of {cols} values as {dtype:?} (blocks of {})",
                    dtype.block_size()
                ),
            ));
        }
        let mut values = vec![0f32; rows * cols];
        for (r, out) in values.chunks_exact_mut(cols).enumerate() {
            self.row(r, out)?;
        }
        let compute = |e: candle_core::Error| EngineError::tensor(name, e.to_string());
        let tensor = Tensor::from_vec(values, (rows, cols), &Device::Cpu).map_err(compute)?;
        let q = QTensor::quantize(&tensor, dtype).map_err(compute)?;
        let bytes = q.data().map_err(compute)?;
        Self::from_bytes(name, dtype, rows, cols, &bytes, Role::Layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q8_matrix(rows: usize, cols: usize) -> (Vec<f32>, Matrix) {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let t = Tensor::from_vec(values.clone(), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let m = Matrix::from_bytes(
            "w",
            GgmlDType::Q8_0,
            rows,
            cols,
            &q.data().unwrap(),
            Role::Layer,
        )
        .unwrap();
        (values, m)
    }

    #[test]
    fn requantized_matrices_keep_their_values_within_the_type_error() {
        let (values, m) = q8_matrix(4, 64);
        for (dtype, tolerance) in [
            (GgmlDType::F32, 0.02),
            (GgmlDType::F16, 0.02),
            (GgmlDType::Q8_0, 0.02),
            (GgmlDType::Q4_1, 0.2),
            (GgmlDType::Q4_0, 0.3),
        ] {
            let (_, m2) = q8_matrix(4, 64);
            let r = m2.requantize("w", dtype).unwrap();
            assert_eq!(r.dtype(), dtype);
            assert_eq!((r.rows(), r.cols()), (4, 64));
            let mut row = vec![0f32; 64];
            for i in 0..4 {
                r.row(i, &mut row).unwrap();
                for (a, b) in row.iter().zip(&values[i * 64..]) {
                    assert!((a - b).abs() <= tolerance, "{dtype:?}: {a} vs {b}");
                }
            }
        }
        assert_eq!(
            m.requantize("w", GgmlDType::Q8_0).unwrap().dtype(),
            GgmlDType::Q8_0
        );
    }

    #[test]
    fn rows_that_do_not_fill_blocks_are_refused_with_the_tensor_name() {
        let (_, m) = q8_matrix(2, 32);
        let err = m
            .requantize("blk.0.attn_q.weight", GgmlDType::Q4K)
            .unwrap_err();
        assert!(err.to_string().contains("blk.0.attn_q.weight"), "{err}");
    }
}
