//! A BERT encoder on candle, the architecture of all-MiniLM-L6-v2 and of most
//! sentence-transformers models: embeddings, `num_hidden_layers` post-norm
//! transformer layers, nothing after them (pooling is the caller's).
//!
//! ```text
//!  ids of b sequences, packed end to end: [T] (T = total tokens, no padding)
//!    ─► word + position + token-type embeddings ─► LayerNorm ─► x [T, h]
//!    ─► layer × N:  x ─► qkv (one matmul over all T tokens)
//!                     ─► per sequence: softmax(q·kᵀ)·v (1/√d folded into q's weights)
//!                     ─► dense ─► +x ─► LayerNorm ─► y
//!                   y ─► dense ─► GELU (erf) ─► dense ─► +y ─► LayerNorm
//!    ─► mean of each sequence's rows (one matmul by a [b, T] averaging matrix) ─► L2 norm
//! ```
//!
//! Written here rather than taken from candle-transformers so the crate
//! builds only what it runs, so the three attention projections are one
//! matrix product (the weights are concatenated once at load time), and so
//! the dense layers, most of the work, run over the real tokens only: a
//! padded batch of mixed lengths spends as much again on padding
//! (sentence-transformers pads to the longest sentence of its batch).
//! Attention runs per sentence, so nothing is padded anywhere. (Padding
//! just attention, gathering rows in and out, measured slower: 101–113
//! sentences/s at batch 32 against 138–142 per sentence. Fusing each dense
//! layer's bias with the residual and LayerNorm, or with GELU, into custom
//! ops measured no better than noise, so the ops stay candle's.)

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_hidden_act() -> String {
    "gelu".to_owned()
}

impl BertConfig {
    /// Refuses what this encoder does not implement, before any weight is read.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(t) = &self.model_type
            && t != "bert"
        {
            return Err(format!("model_type `{t}` is not supported (only `bert`)"));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_python") {
            return Err(format!("hidden_act `{}` is not supported (only `gelu`)", self.hidden_act));
        }
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return Err(format!("position_embedding_type `{p}` is not supported (only `absolute`)"));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0 || self.num_hidden_layers > 128 {
            return Err(format!("num_hidden_layers {} is out of range 1..=128", self.num_hidden_layers));
        }
        Ok(())
    }
}

/// A dense layer `y = x·Wᵀ + b`, with `Wᵀ` stored contiguous so every call
/// is one plain matrix product over the flattened batch.
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(weight: Tensor, bias: Tensor) -> candle_core::Result<Self> {
        Ok(Linear { weight_t: weight.t()?.contiguous()?, bias })
    }

    /// `x` is `[n, in]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

struct Layer {
    qkv: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The encoder with its weights, ready to run. Immutable, so one instance
/// serves every thread.
pub(crate) struct Bert {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_row: Tensor,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
    max_positions: usize,
    device: Device,
}

/// Named tensors from a safetensors file; names may carry a `bert.` prefix.
struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, String> {
        let tensor = self
            .tensors
            .remove(name)
            .or_else(|| self.tensors.remove(&format!("bert.{name}")))
            .ok_or_else(|| format!("the weights have no tensor `{name}`"))?;
        if tensor.dims() != shape {
            return Err(format!("tensor `{name}` has shape {:?}, expected {shape:?}", tensor.dims()));
        }
        tensor.to_dtype(DType::F32).map_err(|e| format!("tensor `{name}`: {e}"))
    }

    fn linear(&mut self, prefix: &str, out: usize, inp: usize) -> Result<Linear, String> {
        let w = self.take(&format!("{prefix}.weight"), &[out, inp])?;
        let b = self.take(&format!("{prefix}.bias"), &[out])?;
        Linear::new(w, b).map_err(|e| format!("{prefix}: {e}"))
    }

    fn norm(&mut self, prefix: &str, size: usize, eps: f64) -> Result<LayerNorm, String> {
        Ok(LayerNorm {
            weight: self.take(&format!("{prefix}.weight"), &[size])?,
            bias: self.take(&format!("{prefix}.bias"), &[size])?,
            eps: eps as f32,
        })
    }
}

impl Bert {
    /// Builds the encoder from the bytes of a safetensors file. Every tensor
    /// is checked for presence and shape, so a mismatched file is refused
    /// here and not at the first forward pass.
    pub(crate) fn load(config: &BertConfig, safetensors: &[u8]) -> Result<Bert, String> {
        config.check()?;
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load_buffer(safetensors, &device)
            .map_err(|e| format!("not a readable safetensors file: {e}"))?;
        let mut w = Weights { tensors };
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let word_embeddings = w.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position_embeddings =
            w.take("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let token_types = w.take("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        // Synod encodes single sentences: every token has type 0.
        let token_type_row = token_types.get(0).map_err(|e| e.to_string())?;
        let embeddings_norm = w.norm("embeddings.LayerNorm", h, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let mut part = |name: &str| -> Result<(Tensor, Tensor), String> {
                let prefix = format!("{p}.attention.self.{name}");
                Ok((w.take(&format!("{prefix}.weight"), &[h, h])?, w.take(&format!("{prefix}.bias"), &[h])?))
            };
            let (qw, qb) = part("query")?;
            // softmax(q·kᵀ/√d): the scale is applied to q's weights once, here.
            let scale = 1.0 / ((h / config.num_attention_heads) as f64).sqrt();
            let (qw, qb) = ((qw * scale).map_err(|e| e.to_string())?, (qb * scale).map_err(|e| e.to_string())?);
            let (kw, kb) = part("key")?;
            let (vw, vb) = part("value")?;
            let fuse = |e: candle_core::Error| format!("{p}: {e}");
            let qkv = Linear::new(
                Tensor::cat(&[&qw, &kw, &vw], 0).map_err(fuse)?,
                Tensor::cat(&[&qb, &kb, &vb], 0).map_err(fuse)?,
            )
            .map_err(fuse)?;
            layers.push(Layer {
                qkv,
                attention_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attention_norm: w.norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                intermediate: w.linear(&format!("{p}.intermediate.dense"), config.intermediate_size, h)?,
                output: w.linear(&format!("{p}.output.dense"), h, config.intermediate_size)?,
                output_norm: w.norm(&format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        Ok(Bert {
            word_embeddings,
            position_embeddings,
            token_type_row,
            embeddings_norm,
            layers,
            heads: config.num_attention_heads,
            head_dim: h / config.num_attention_heads,
            hidden: h,
            max_positions: config.max_position_embeddings,
            device,
        })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub(crate) fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Mean-pooled, L2-normalised sentence vectors of a batch of token id
    /// sequences (each at most [`Bert::max_positions`] long, at least one
    /// token). The sequences are packed, not padded, so a sequence's vector
    /// does not depend on its batch, and no work is spent on padding.
    pub(crate) fn embed(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let b = batch.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        let total: usize = batch.iter().map(|ids| ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(b);
        // Row i of `pool` averages sequence i's rows of the output.
        let mut pool = vec![0f32; b * total];
        for (row, seq) in batch.iter().enumerate() {
            if seq.is_empty() || seq.len() > self.max_positions {
                candle_core::bail!("sequence {row} has {} tokens (1..={} allowed)", seq.len(), self.max_positions);
            }
            let offset = ids.len();
            spans.push((offset, seq.len()));
            pool[row * total + offset..row * total + offset + seq.len()].fill(1.0 / seq.len() as f32);
            ids.extend_from_slice(seq);
            positions.extend(0..seq.len() as u32);
        }
        let ids = Tensor::from_vec(ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let x = self.word_embeddings.index_select(&ids, 0)?;
        let x = (x + self.position_embeddings.index_select(&positions, 0)?)?.broadcast_add(&self.token_type_row)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, &spans)?;
        }
        let pool = Tensor::from_vec(pool, (b, total), &self.device)?;
        let mean = pool.matmul(&x)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }

    /// One layer over packed tokens `x` [T, h]; `spans` are the sequences'
    /// (offset, length) in it. Attention is per sequence, so tokens attend
    /// only within their own sentence and no mask is needed.
    fn layer(&self, layer: &Layer, x: &Tensor, spans: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        let (heads, d, h) = (self.heads, self.head_dim, self.hidden);
        let qkv = layer.qkv.forward(x)?;
        let mut contexts = Vec::with_capacity(spans.len());
        for &(offset, len) in spans {
            // [len, 3h] -> [3, heads, len, d]
            let t = qkv.narrow(0, offset, len)?.reshape((len, 3, heads, d))?.permute((1, 2, 0, 3))?.contiguous()?;
            let (q, k, v) = (t.get(0)?, t.get(1)?, t.get(2)?);
            let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
            contexts.push(probs.matmul(&v)?.transpose(0, 1)?.reshape((len, h))?);
        }
        let context = Tensor::cat(&contexts, 0)?;
        let attended = layer.attention_norm.forward(&(layer.attention_out.forward(&context)? + x)?)?;
        let inner = layer.intermediate.forward(&attended)?.apply_op1_no_bwd(&GeluErf)?;
        layer.output_norm.forward(&(layer.output.forward(&inner)? + attended)?)
    }
}

/// GELU with the exact erf form BERT uses, `0.5·x·(1 + erf(x/√2))`, over a
/// rational approximation of erf (odd degree-13 over even degree-8, on x
/// clamped to [-4, 4], error ~1e-7) instead of a libm call per element: the
/// loop has no calls or branches, so the compiler vectorizes it. candle's
/// `gelu_erf` spent 11 % of a forward pass in scalar `erff`.
struct GeluErf;

#[inline]
fn erf_approx(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

impl candle_core::CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "synod-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(data) = storage else { candle_core::bail!("synod-gelu-erf: f32 only") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("synod-gelu-erf: contiguous input only")
        };
        let out = data[start..end]
            .iter()
            .map(|&x| 0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2)))
            .collect();
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BertConfig {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 12, "model_type": "bert"
        }))
        .expect("a valid config")
    }

    #[test]
    fn unsupported_configs_are_refused_by_name() {
        let mut c = config();
        assert_eq!(c.check(), Ok(()));
        c.hidden_act = "relu".into();
        assert!(c.check().unwrap_err().contains("hidden_act `relu`"));
        let mut c = config();
        c.num_attention_heads = 3;
        assert!(c.check().unwrap_err().contains("not a multiple"));
        let mut c = config();
        c.model_type = Some("roberta".into());
        assert!(c.check().unwrap_err().contains("roberta"));
    }

    #[test]
    fn the_fast_gelu_matches_candles_exact_one() {
        let xs: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 / 1000.0).collect();
        let t = Tensor::from_vec(xs.clone(), xs.len(), &Device::Cpu).expect("tensor");
        let exact = t.gelu_erf().expect("gelu").to_vec1::<f32>().expect("vec");
        let fast = t.apply_op1_no_bwd(&GeluErf).expect("gelu").to_vec1::<f32>().expect("vec");
        let worst = exact.iter().zip(&fast).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-6, "max |exact - fast| = {worst}");
        // Control: the tanh approximation of GELU is further off than that.
        let tanh = t.gelu().expect("gelu").to_vec1::<f32>().expect("vec");
        let tanh_worst = exact.iter().zip(&tanh).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(tanh_worst > 1e-4, "{tanh_worst}");
    }

    #[test]
    fn garbage_weights_are_an_error_not_a_panic() {
        let err = Bert::load(&config(), b"not safetensors").err().expect("garbage is refused");
        assert!(err.contains("safetensors"), "{err}");
        assert!(Bert::load(&config(), &[0xff; 8]).is_err());
    }
}
