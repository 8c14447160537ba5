//! A plain-loop f64 reference of the LeNet: direct convolutions over (channel, row, column)
//! maps, no im2col, no GEMM, no chunks, written from the layout documented in `lenet.rs`.

use dprox_data::Dataset;
use dprox_objective::{Activation, ModelSpec, Pool};

use super::{act, act_grad, rows_f64};

/// A LeNet spec with small widths, for the tests.
pub fn lenet_spec(
    image: [usize; 3],
    channels: [usize; 2],
    hidden: &[usize],
    activation: Activation,
    pool: Pool,
    bias: bool,
) -> ModelSpec {
    ModelSpec {
        image: Some(image),
        channels: channels.to_vec(),
        hidden: hidden.to_vec(),
        activation,
        pool,
        bias,
        ..ModelSpec::new(dprox_objective::ModelKind::LeNet)
    }
}

/// The LeNet specs the tests sweep on images of `image`: each activation with max pooling, and
/// average pooling, with and without bias.
pub fn lenet_specs(image: [usize; 3]) -> Vec<ModelSpec> {
    let mut v = Vec::new();
    for bias in [true, false] {
        for a in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            v.push(lenet_spec(image, [3, 4], &[6, 5], a, Pool::Max, bias));
        }
        v.push(lenet_spec(image, [3, 4], &[6], Activation::Tanh, Pool::Average, bias));
    }
    v
}

/// A c x h x w map, stored [c][y][x].
#[derive(Clone)]
struct Map {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f64>,
}

impl Map {
    fn zeros(c: usize, h: usize, w: usize) -> Map {
        Map { c, h, w, v: vec![0.0; c * h * w] }
    }
    fn at(&self, c: usize, y: usize, x: usize) -> f64 {
        self.v[(c * self.h + y) * self.w + x]
    }
    fn at_mut(&mut self, c: usize, y: usize, x: usize) -> &mut f64 {
        &mut self.v[(c * self.h + y) * self.w + x]
    }
}

/// Parameter offsets: W then b for each layer, W[o][ky][kx][ci] for the convolutions.
struct Offsets {
    conv: [(usize, usize); 2],
    dense: Vec<usize>,
}

/// Direct 5x5 convolution with padding `pad`; returns the pre-activations.
fn conv(x: &[f64], (w, b): (usize, usize), cout: usize, input: &Map, pad: usize, bias: bool) -> Map {
    let (ho, wo) = (input.h + 2 * pad - 4, input.w + 2 * pad - 4);
    let mut out = Map::zeros(cout, ho, wo);
    for o in 0..cout {
        for y in 0..ho {
            for xx in 0..wo {
                let mut s = if bias { x[b + o] } else { 0.0 };
                for ky in 0..5 {
                    for kx in 0..5 {
                        let (iy, ix) = ((y + ky) as isize - pad as isize, (xx + kx) as isize - pad as isize);
                        if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                            continue;
                        }
                        for ci in 0..input.c {
                            s += x[w + ((o * 5 + ky) * 5 + kx) * input.c + ci]
                                * input.at(ci, iy as usize, ix as usize);
                        }
                    }
                }
                *out.at_mut(o, y, xx) = s;
            }
        }
    }
    out
}

/// Adds the gradients of a convolution's parameters to `grad` and returns dLoss/d(input).
#[allow(clippy::too_many_arguments)]
fn conv_back(
    x: &[f64],
    (w, b): (usize, usize),
    dz: &Map,
    input: &Map,
    pad: usize,
    bias: bool,
    grad: &mut [f64],
    scale: f64,
) -> Map {
    let mut din = Map::zeros(input.c, input.h, input.w);
    for o in 0..dz.c {
        for y in 0..dz.h {
            for xx in 0..dz.w {
                let d = dz.at(o, y, xx);
                if bias {
                    grad[b + o] += d * scale;
                }
                for ky in 0..5 {
                    for kx in 0..5 {
                        let (iy, ix) = ((y + ky) as isize - pad as isize, (xx + kx) as isize - pad as isize);
                        if iy < 0 || ix < 0 || iy >= input.h as isize || ix >= input.w as isize {
                            continue;
                        }
                        for ci in 0..input.c {
                            let k = w + ((o * 5 + ky) * 5 + kx) * input.c + ci;
                            grad[k] += d * input.at(ci, iy as usize, ix as usize) * scale;
                            *din.at_mut(ci, iy as usize, ix as usize) += d * x[k];
                        }
                    }
                }
            }
        }
    }
    din
}

/// 2x2 pooling; also returns, per output, the (dy, dx) a max pool picked (the first largest).
fn pool(kind: Pool, a: &Map) -> (Map, Vec<(usize, usize)>) {
    let mut out = Map::zeros(a.c, a.h / 2, a.w / 2);
    let mut pick = Vec::new();
    for c in 0..a.c {
        for y in 0..a.h / 2 {
            for x in 0..a.w / 2 {
                let win = [(0, 0), (0, 1), (1, 0), (1, 1)];
                let val = |(dy, dx): (usize, usize)| a.at(c, 2 * y + dy, 2 * x + dx);
                let best = win.into_iter().fold((0, 0), |b, p| if val(p) > val(b) { p } else { b });
                pick.push(best);
                *out.at_mut(c, y, x) = match kind {
                    Pool::Max => val(best),
                    Pool::Average => win.into_iter().map(val).sum::<f64>() / 4.0,
                };
            }
        }
    }
    (out, pick)
}

fn pool_back(kind: Pool, a: &Map, dout: &Map, pick: &[(usize, usize)]) -> Map {
    let mut din = Map::zeros(a.c, a.h, a.w);
    let mut k = 0;
    for c in 0..a.c {
        for y in 0..a.h / 2 {
            for x in 0..a.w / 2 {
                let d = dout.at(c, y, x);
                match kind {
                    Pool::Max => {
                        let (dy, dx) = pick[k];
                        *din.at_mut(c, 2 * y + dy, 2 * x + dx) += d;
                    }
                    Pool::Average => {
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            *din.at_mut(c, 2 * y + dy, 2 * x + dx) += d / 4.0;
                        }
                    }
                }
                k += 1;
            }
        }
    }
    din
}

/// Reference mean loss and gradient of the LeNet `spec` (all fields set) over the samples `idx`.
pub fn lenet_reference(spec: &ModelSpec, data: &Dataset, x: &[f64], idx: &[usize]) -> (f64, Vec<f64>) {
    let [c0, h0, w0] = spec.image.expect("the reference needs the image shape");
    let (c1, c2) = (spec.channels[0], spec.channels[1]);
    let classes = data.classes.expect("classes");
    let (a, bias) = (spec.activation, spec.bias);
    let nb = usize::from(bias);
    // Offsets, from the documented layout.
    let conv1 = (0, 25 * c0 * c1);
    let conv2_w = conv1.1 + c1 * nb;
    let conv2 = (conv2_w, conv2_w + 25 * c1 * c2);
    let (h3, w3) = ((h0 / 2 - 4) / 2, (w0 / 2 - 4) / 2);
    let mut sizes = vec![h3 * w3 * c2];
    sizes.extend(&spec.hidden);
    sizes.push(classes);
    let mut off = Offsets { conv: [conv1, conv2], dense: Vec::new() };
    let mut o = conv2.1 + c2 * nb;
    for l in 0..sizes.len() - 1 {
        off.dense.push(o);
        o += sizes[l] * sizes[l + 1] + sizes[l + 1] * nb;
    }
    assert_eq!(o, x.len(), "reference layout disagrees with dim");
    let rows = rows_f64(data);
    let mut grad = vec![0.0; x.len()];
    let mut loss = 0.0;
    let scale = 1.0 / idx.len() as f64;
    let nl = sizes.len() - 1;
    for &i in idx {
        let img = Map { c: c0, h: h0, w: w0, v: rows[i].clone() };
        let mut a1 = conv(x, off.conv[0], c1, &img, 2, bias);
        a1.v.iter_mut().for_each(|v| *v = act(a, *v));
        let (p1, pick1) = pool(spec.pool, &a1);
        let mut a2 = conv(x, off.conv[1], c2, &p1, 0, bias);
        a2.v.iter_mut().for_each(|v| *v = act(a, *v));
        let (p2, pick2) = pool(spec.pool, &a2);
        // Flatten in (y, x, c) order.
        let mut flat = vec![0.0; sizes[0]];
        for c in 0..c2 {
            for y in 0..h3 {
                for xx in 0..w3 {
                    flat[(y * w3 + xx) * c2 + c] = p2.at(c, y, xx);
                }
            }
        }
        let mut acts = vec![flat];
        let mut pre: Vec<Vec<f64>> = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            let z: Vec<f64> = (0..fo)
                .map(|j| {
                    let b = if bias { x[off.dense[l] + fo * fi + j] } else { 0.0 };
                    b + (0..fi).map(|k| x[off.dense[l] + j * fi + k] * acts[l][k]).sum::<f64>()
                })
                .collect();
            acts.push(if l + 1 < nl { z.iter().map(|&v| act(a, v)).collect() } else { z.clone() });
            pre.push(z);
        }
        let out = &pre[nl - 1];
        let y = data.class_of(i);
        let den: f64 = out.iter().map(|v| v.exp()).sum();
        loss += den.ln() - out[y];
        let mut d: Vec<f64> =
            out.iter().enumerate().map(|(j, v)| v.exp() / den - f64::from(u8::from(j == y))).collect();
        for l in (0..nl).rev() {
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            let mut dp = vec![0.0; fi];
            for j in 0..fo {
                for k in 0..fi {
                    grad[off.dense[l] + j * fi + k] += d[j] * acts[l][k] * scale;
                    dp[k] += d[j] * x[off.dense[l] + j * fi + k];
                }
                if bias {
                    grad[off.dense[l] + fo * fi + j] += d[j] * scale;
                }
            }
            if l > 0 {
                dp.iter_mut().zip(&pre[l - 1]).for_each(|(v, &z)| *v *= act_grad(a, z));
            }
            d = dp;
        }
        let mut dp2 = Map::zeros(c2, h3, w3);
        for c in 0..c2 {
            for y in 0..h3 {
                for xx in 0..w3 {
                    *dp2.at_mut(c, y, xx) = d[(y * w3 + xx) * c2 + c];
                }
            }
        }
        let mut dz2 = pool_back(spec.pool, &a2, &dp2, &pick2);
        dz2.v.iter_mut().zip(&a2.v).for_each(|(g, &o)| *g *= act_grad_from_output(a, o));
        let dp1 = conv_back(x, off.conv[1], &dz2, &p1, 0, bias, &mut grad, scale);
        let mut dz1 = pool_back(spec.pool, &a1, &dp1, &pick1);
        dz1.v.iter_mut().zip(&a1.v).for_each(|(g, &o)| *g *= act_grad_from_output(a, o));
        conv_back(x, off.conv[0], &dz1, &img, 2, bias, &mut grad, scale);
    }
    (loss * scale, grad)
}

/// The activation's derivative from its output (the maps keep only outputs).
fn act_grad_from_output(a: Activation, o: f64) -> f64 {
    match a {
        Activation::Relu => f64::from(u8::from(o > 0.0)),
        Activation::Tanh => 1.0 - o * o,
        Activation::Sigmoid => o * (1.0 - o),
    }
}
