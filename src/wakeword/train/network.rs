//! Step 5 of training, the network: the one rustpotter's `WakewordModel`
//! describes (tiny/small/medium/large: two or three dense layers, ReLU),
//! trained here with mini-batch AdamW in plain Rust (see [`Mlp`] for why not
//! `WakewordModelTrain::train_from_buffers`), and its held-out figures.

use std::collections::HashMap;

use rustpotter::TensorData;

use super::TestFigures;
use super::features::Dataset;
use crate::wakeword::augment::Rng;

/// Options of [`Mlp::train`].
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Passes.
    pub epochs: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Threads (each takes a fixed part of every batch; the gradients are
    /// summed in a fixed order, so the result does not depend on timing).
    pub threads: usize,
}

/// One dense layer: `w` is `out × in`, row-major, as candle stores it.
#[derive(Debug, Clone)]
struct Dense {
    n_in: usize,
    n_out: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// The network of a rustpotter `WakewordModel` (dense layers, ReLU between),
/// trained here rather than with `WakewordModelTrain::train_from_buffers`:
/// rustpotter 3.0.2 takes its clips in a `HashMap` with a random hasher, so
/// the order of the rows (and so the float rounding of every gradient) changes
/// from run to run and the same seed would not give the same file; it also
/// trains full-batch SGD only and prints to stdout. This trainer is plain
/// Rust, deterministic, and writes the same weight names, shapes and dtype.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Dense>,
}

/// Gradients (same shapes as the layers).
#[derive(Debug, Clone)]
struct Grads {
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
    loss: f64,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

impl Mlp {
    /// Layers of `widths` (input first), weights Kaiming-normal and biases
    /// uniform in ±1/√fan-in (candle's `linear` init), from `rng`.
    pub fn new(widths: &[usize], rng: &mut Rng) -> Self {
        let layers = widths
            .windows(2)
            .map(|p| {
                let (n_in, n_out) = (p[0], p[1]);
                let std = (2.0 / n_in as f64).sqrt();
                let bound = 1.0 / (n_in as f64).sqrt();
                Dense {
                    n_in,
                    n_out,
                    w: (0..n_in * n_out)
                        .map(|_| (rng.normal() * std) as f32)
                        .collect(),
                    b: (0..n_out)
                        .map(|_| rng.range(-bound, bound) as f32)
                        .collect(),
                }
            })
            .collect();
        Mlp { layers }
    }

    /// The network stored in a rustpotter model (f32 weights named as
    /// [`Mlp::weights`] writes them); `None` if the layers do not fit.
    pub fn from_weights(weights: &HashMap<String, TensorData>) -> Option<Self> {
        let mut layers = Vec::new();
        for i in 1.. {
            let (Some(w), Some(b)) = (
                weights.get(&format!("ln{i}.weight")),
                weights.get(&format!("ln{i}.bias")),
            ) else {
                break;
            };
            let f = |t: &TensorData| -> Vec<f32> {
                t.bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            };
            let (&n_out, &n_in) = (w.dims.first()?, w.dims.get(1)?);
            layers.push(Dense {
                n_in,
                n_out,
                w: f(w),
                b: f(b),
            });
        }
        (!layers.is_empty()).then_some(Mlp { layers })
    }

    /// Number of weights and biases.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// Output logits of every layer's activations (input excluded).
    fn forward_all(&self, x: &[f32]) -> Vec<Vec<f32>> {
        let mut acts: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        for (li, l) in self.layers.iter().enumerate() {
            let input: &[f32] = if li == 0 { x } else { &acts[li - 1] };
            let last = li + 1 == self.layers.len();
            let out: Vec<f32> = (0..l.n_out)
                .map(|o| {
                    let z = dot(&l.w[o * l.n_in..(o + 1) * l.n_in], input) + l.b[o];
                    if last { z } else { z.max(0.0) }
                })
                .collect();
            acts.push(out);
        }
        acts
    }

    /// The logits for one input.
    pub fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.forward_all(x).pop().unwrap_or_default()
    }

    fn zero_grads(&self) -> Grads {
        Grads {
            w: self.layers.iter().map(|l| vec![0f32; l.w.len()]).collect(),
            b: self.layers.iter().map(|l| vec![0f32; l.b.len()]).collect(),
            loss: 0.0,
        }
    }

    /// Adds the weighted cross-entropy gradient of one example.
    fn backprop(&self, x: &[f32], y: usize, weight: f32, g: &mut Grads) {
        let acts = self.forward_all(x);
        let logits = &acts[acts.len() - 1];
        let m = logits.iter().cloned().fold(f32::MIN, f32::max);
        let exps: Vec<f32> = logits.iter().map(|v| (v - m).exp()).collect();
        let sum: f32 = exps.iter().sum();
        let mut delta: Vec<f32> = exps
            .iter()
            .enumerate()
            .map(|(i, e)| weight * (e / sum - if i == y { 1.0 } else { 0.0 }))
            .collect();
        g.loss += f64::from(weight) * -f64::from((exps[y] / sum).max(1e-12).ln());
        for li in (0..self.layers.len()).rev() {
            let l = &self.layers[li];
            let input: &[f32] = if li == 0 { x } else { &acts[li - 1] };
            for (o, &d) in delta.iter().enumerate() {
                if d == 0.0 {
                    continue;
                }
                g.b[li][o] += d;
                let row = &mut g.w[li][o * l.n_in..(o + 1) * l.n_in];
                for (gw, &xi) in row.iter_mut().zip(input) {
                    *gw += d * xi;
                }
            }
            if li > 0 {
                let mut prev = vec![0f32; l.n_in];
                for (o, &d) in delta.iter().enumerate() {
                    if d == 0.0 {
                        continue;
                    }
                    let row = &l.w[o * l.n_in..(o + 1) * l.n_in];
                    for (p, &w) in prev.iter_mut().zip(row) {
                        *p += d * w;
                    }
                }
                // ReLU: the previous layer's activation is zero where it was cut.
                for (p, &a) in prev.iter_mut().zip(&acts[li - 1]) {
                    if a <= 0.0 {
                        *p = 0.0;
                    }
                }
                delta = prev;
            }
        }
    }

    /// Mini-batch AdamW with a cosine learning-rate schedule; the classes
    /// are weighted so that both count equally. Returns the last epoch's
    /// mean loss.
    pub fn train(
        &mut self,
        data: &Dataset,
        opts: &TrainOptions,
        rng: &mut Rng,
        progress: &dyn Fn(usize, f64),
    ) -> f64 {
        let n = data.len();
        let n_pos = data.y.iter().filter(|&&y| y == 1).count().max(1);
        let n_neg = (n - n_pos.min(n)).max(1);
        let class_w = [
            n as f32 / (2.0 * n_neg as f32),
            n as f32 / (2.0 * n_pos as f32),
        ];
        let mut adam = Adam {
            m: self.zero_grads(),
            v: self.zero_grads(),
        };
        let steps_per_epoch = n.div_ceil(opts.batch_size);
        let total_steps = (steps_per_epoch * opts.epochs).max(1);
        let mut step = 0usize;
        let mut order: Vec<usize> = (0..n).collect();
        let mut last_loss = 0.0;
        let threads = opts.threads.max(1);
        for epoch in 1..=opts.epochs {
            rng.shuffle(&mut order);
            let picks = epoch_picks(data, rng);
            let mut epoch_loss = 0.0;
            for batch in order.chunks(opts.batch_size) {
                let g = self.batch_gradient(data, batch, &picks, class_w, threads);
                epoch_loss += g.loss;
                step += 1;
                let lr = opts.learning_rate
                    * 0.5
                    * (1.0 + (std::f64::consts::PI * step as f64 / total_steps as f64).cos());
                self.adamw_step(&g, &mut adam, step, lr, batch.len(), opts.weight_decay);
            }
            last_loss = epoch_loss / n as f64;
            progress(epoch, last_loss);
        }
        last_loss
    }

    /// The summed gradient of one batch. Each of `threads` threads takes a
    /// fixed part of the batch and the parts are summed in order, so the
    /// result does not depend on timing.
    fn batch_gradient(
        &self,
        data: &Dataset,
        batch: &[usize],
        picks: &[Pick],
        class_w: [f32; 2],
        threads: usize,
    ) -> Grads {
        let parts: Vec<&[usize]> = batch.chunks(batch.len().div_ceil(threads)).collect();
        let grads: Vec<Grads> = std::thread::scope(|s| {
            let hs: Vec<_> = parts
                .iter()
                .map(|part| {
                    let this = self;
                    s.spawn(move || {
                        let mut g = this.zero_grads();
                        for &i in *part {
                            let (o, mask) = picks[i];
                            let x = data.window(i, o, mask);
                            this.backprop(&x, data.y[i], class_w[data.y[i]], &mut g);
                        }
                        g
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| self.zero_grads()))
                .collect()
        });
        let mut g = self.zero_grads();
        for part in &grads {
            for li in 0..g.w.len() {
                g.w[li]
                    .iter_mut()
                    .zip(&part.w[li])
                    .for_each(|(a, b)| *a += b);
                g.b[li]
                    .iter_mut()
                    .zip(&part.b[li])
                    .for_each(|(a, b)| *a += b);
            }
            g.loss += part.loss;
        }
        g
    }

    /// One AdamW update (step number `step`, from 1) with the summed
    /// gradient `g` of a batch of `batch_len` examples.
    fn adamw_step(
        &mut self,
        g: &Grads,
        adam: &mut Adam,
        step: usize,
        lr: f64,
        batch_len: usize,
        weight_decay: f64,
    ) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let scale = 1.0 / batch_len as f64;
        let bc1 = 1.0 - b1.powi(step as i32);
        let bc2 = 1.0 - b2.powi(step as i32);
        for li in 0..self.layers.len() {
            let layer = &mut self.layers[li];
            let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decay: bool| {
                for i in 0..p.len() {
                    let gi = f64::from(g[i]) * scale;
                    let mi = b1 * f64::from(m[i]) + (1.0 - b1) * gi;
                    let vi = b2 * f64::from(v[i]) + (1.0 - b2) * gi * gi;
                    m[i] = mi as f32;
                    v[i] = vi as f32;
                    let mut pi = f64::from(p[i]);
                    if decay {
                        pi -= lr * weight_decay * pi;
                    }
                    pi -= lr * (mi / bc1) / ((vi / bc2).sqrt() + eps);
                    p[i] = pi as f32;
                }
            };
            update(
                &mut layer.w,
                &g.w[li],
                &mut adam.m.w[li],
                &mut adam.v.w[li],
                true,
            );
            update(
                &mut layer.b,
                &g.b[li],
                &mut adam.m.b[li],
                &mut adam.v.b[li],
                false,
            );
        }
    }
    /// The weights as rustpotter stores them: `ln{i}.weight` (`out × in`)
    /// and `ln{i}.bias`, f32 little-endian.
    pub fn weights(&self) -> HashMap<String, TensorData> {
        let mut out = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
            out.insert(
                format!("ln{}.weight", i + 1),
                TensorData {
                    bytes: bytes(&l.w),
                    dims: vec![l.n_out, l.n_in],
                    d_type: "f32".into(),
                },
            );
            out.insert(
                format!("ln{}.bias", i + 1),
                TensorData {
                    bytes: bytes(&l.b),
                    dims: vec![l.n_out],
                    d_type: "f32".into(),
                },
            );
        }
        out
    }
}

/// AdamW's first and second moments.
struct Adam {
    m: Grads,
    v: Grads,
}

/// An example's window offset and time mask (start, frames) for one epoch.
type Pick = (usize, (usize, usize));

/// This epoch's window offset and time mask of every example, drawn from
/// `rng` in example order.
fn epoch_picks(data: &Dataset, rng: &mut Rng) -> Vec<Pick> {
    (0..data.len())
        .map(|i| {
            let (lo, hi) = data.offsets[i];
            let o = lo + rng.below(hi.saturating_sub(lo) + 1);
            let mask = if rng.chance(0.5) {
                (rng.below(data.frames), 1 + rng.below(10))
            } else {
                (0, 0)
            };
            (o, mask)
        })
        .collect()
}

/// Argmax figures on a dataset.
pub(super) fn evaluate(mlp: &Mlp, data: &Dataset) -> TestFigures {
    let mut f = TestFigures::default();
    let (mut tp, mut fp, mut correct) = (0usize, 0usize, 0usize);
    for (i, &y) in data.y.iter().enumerate() {
        let l = mlp.logits(&data.eval_window(i));
        let pred = usize::from(l[1] > l[0]);
        if pred == y {
            correct += 1;
        }
        if y == 1 {
            f.positives += 1;
            tp += pred;
        } else {
            f.negatives += 1;
            fp += pred;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    f.accuracy = ratio(correct, data.len());
    f.recall = ratio(tp, f.positives);
    f.false_positive_rate = ratio(fp, f.negatives);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_is_deterministic_and_learns() {
        let mut data = Dataset::new(4, 8);
        let mut rng = Rng::new(5);
        for i in 0..200 {
            let y = i % 2;
            let x: Vec<f32> = (0..32)
                .map(|k| rng.normal() as f32 + if y == 1 && k < 4 { 2.0 } else { 0.0 })
                .collect();
            data.push(x, y, (0, 0));
        }
        let opts = TrainOptions {
            epochs: 20,
            learning_rate: 0.01,
            batch_size: 16,
            weight_decay: 0.0,
            threads: 2,
        };
        let fit = || {
            let mut m = Mlp::new(&[32, 8, 2], &mut Rng::new(1));
            m.train(&data, &opts, &mut Rng::new(2), &|_, _| {});
            m
        };
        let (a, b) = (fit(), fit());
        assert_eq!(a.layers[0].w, b.layers[0].w);
        assert!(evaluate(&a, &data).accuracy > 0.9);
        let w = a.weights();
        assert_eq!(w["ln1.weight"].dims, vec![8, 32]);
        assert_eq!(w["ln2.bias"].bytes.len(), 8);
    }
}
