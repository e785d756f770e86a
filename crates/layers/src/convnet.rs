//! The book's convolutional networks as [`Sequential`] models.
//!
//! * [`SimpleConvNet`] (`ch07/simple_convnet.py`): `Conv - Relu - Pool -
//!   Affine - Relu - Affine`, weights `0.01 * N(0, 1)`.
//! * [`NetSpec::deep_convnet`] (`ch08/deep_convnet.py`): six 3x3 convolutions
//!   (16, 16, pool, 32, 32, pool, 64, 64, pool), then `Affine 50 - Relu -
//!   Dropout 0.5 - Affine 10 - Dropout 0.5`, He's initial weights.
//!
//! Both are recipes over the builder ([`NetSpec`]), which draws the weights
//! in the order W1, W2, ... from one ChaCha8 stream seeded by the caller;
//! biases start at 0.

use crate::{Init, LayerError, NetSpec, Sequential};
use tensor::Element;

/// The book's `SimpleConvNet` and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleConvNet {
    /// `(C, H, W)` of one example.
    pub input: (usize, usize, usize),
    /// The number of convolution filters (the conv output's channels).
    pub filters: usize,
    /// The side of each square filter, in pixels.
    pub filter_size: usize,
    /// The zero padding on each side of the input, in pixels.
    pub pad: usize,
    /// The convolution's step between windows, in pixels.
    pub stride: usize,
    /// The width of the hidden Affine layer.
    pub hidden: usize,
    /// The number of classes (the last Affine layer's width).
    pub classes: usize,
    /// The standard deviation of every initial weight: `W = std * N(0, 1)`.
    pub weight_init_std: f64,
}

impl Default for SimpleConvNet {
    /// The book's: 1x28x28 input, 30 filters of 5x5, stride 1, pad 0, a
    /// 2x2 max pool of stride 2, 100 hidden units, 10 classes, std 0.01.
    fn default() -> Self {
        SimpleConvNet {
            input: (1, 28, 28),
            filters: 30,
            filter_size: 5,
            pad: 0,
            stride: 1,
            hidden: 100,
            classes: 10,
            weight_init_std: 0.01,
        }
    }
}

impl SimpleConvNet {
    /// The small net of the book's `ch07/gradient_check.py`: a 1x10x10
    /// input, 10 filters of 3x3, 10 hidden units.
    pub fn gradient_check() -> Self {
        SimpleConvNet {
            input: (1, 10, 10),
            filters: 10,
            filter_size: 3,
            hidden: 10,
            ..Self::default()
        }
    }

    /// The recipe as a [`NetSpec`]: `Conv - Relu - Pool(2x2) - Affine
    /// (hidden) - Relu - Affine (classes)`, every weight `std * N(0, 1)`.
    pub fn net(&self) -> NetSpec {
        let (channels, height, width) = self.input;
        NetSpec::new(&[channels, height, width])
            .conv_with(self.filters, self.filter_size, self.stride, self.pad)
            .relu()
            .pool(2)
            .affine(self.hidden)
            .relu()
            .affine(self.classes)
            .init(Init::Std(self.weight_init_std))
    }

    /// The network, with weights drawn from the stream seeded by `seed`.
    pub fn build<T: Element>(&self, seed: u64) -> Result<Sequential<T>, LayerError> {
        self.net().build(seed)
    }
}

impl NetSpec {
    /// The book's `DeepConvNet` for 1x28x28 images and 10 classes: six 3x3
    /// convolutions (16, 16, pool, 32, 32, pool, 64, 64, pool), then `Affine
    /// 50 - Relu - Dropout 0.5 - Affine 10 - Dropout 0.5`, He's initial
    /// weights. Its fourth convolution pads by 2 (as `deep_convnet.py` does),
    /// so the last pool leaves 64 x 4 x 4 values for the first Affine layer.
    pub fn deep_convnet() -> NetSpec {
        // (filters, pad) of the six 3x3 convolutions; a pool follows every second.
        const CONVS: [(usize, usize); 6] = [(16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1)];
        let mut net = NetSpec::new(&[1, 28, 28]).init(Init::He);
        for (i, &(filters, pad)) in CONVS.iter().enumerate() {
            net = net.conv_with(filters, 3, 1, pad).relu();
            if i % 2 == 1 {
                net = net.pool(2);
            }
        }
        net.affine(50).relu().dropout(0.5).affine(10).dropout(0.5)
    }

    /// The book's `TwoLayerNet(input_size, hidden_size, output_size)`:
    /// `Affine - Relu - Affine`, weights `0.01 * N(0, 1)`.
    pub fn two_layer_net(input_size: usize, hidden_size: usize, output_size: usize) -> NetSpec {
        NetSpec::new(&[input_size])
            .affine(hidden_size)
            .relu()
            .affine(output_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{mean_abs_diff, numerical_gradient, relative_error};
    use crate::{LayerRng, Target};
    use rand::SeedableRng;
    use tensor::Tensor;

    #[test]
    fn the_books_architectures_and_names() {
        let simple = SimpleConvNet::default().build::<f32>(42).unwrap();
        assert_eq!(
            simple.summary(),
            "Conv(30x5x5 s1 p0) Relu Pool(2x2 s2 p0) Affine(4320x100) Relu Affine(100x10)"
        );
        assert_eq!(simple.param_names(), ["W1", "b1", "W2", "b2", "W3", "b3"]);
        assert_eq!(simple.input_shape(), &[1, 28, 28]);
        assert_eq!(simple.num_params(), 30 * 25 + 30 + 4320 * 100 + 100 + 100 * 10 + 10);
        let deep = NetSpec::deep_convnet().build::<f32>(42).unwrap();
        assert_eq!(deep.param_names().len(), 16, "W1..W8, b1..b8");
        assert!(deep.summary().contains("Conv(32x3x3 s1 p2)"), "{}", deep.summary());
        assert!(deep
            .summary()
            .ends_with("Affine(1024x50) Relu Dropout(0.5) Affine(50x10) Dropout(0.5)"));
        // He's scale for the second convolution: sqrt(2 / (16 * 9)).
        let w2 = deep.params()[2].value;
        let std = (w2.as_slice().iter().map(|v| v * v).sum::<f32>() / w2.numel() as f32).sqrt();
        assert!((std / (2.0f32 / 144.0).sqrt() - 1.0).abs() < 0.05, "{std}");
    }

    #[test]
    fn simple_convnet_backprop_matches_the_numerical_gradient() {
        // The book's ch07/gradient_check.py: the small net on one 1x10x10
        // input; two images here, so that the batch sums are exercised.
        let mut model = SimpleConvNet::gradient_check().build::<f64>(3).unwrap();
        let mut rng = LayerRng::seed_from_u64(4);
        let mut x = Tensor::<f64>::randn(&[2, 100], 1.0, &mut rng);
        model.shape_batch(&mut x).unwrap();
        let labels = [1usize, 7];
        model.gradient(&x, Target::Labels(&labels), &mut rng).unwrap();
        let numerical = numerical_gradient(&model, &x, Target::Labels(&labels), 1e-5, 0).unwrap();
        for (param, (name, num)) in model.params().iter().zip(&numerical) {
            let (bp, nu) = (param.grad.as_slice(), num.as_slice());
            assert!(mean_abs_diff(bp, nu) < 1e-10, "{name}: {}", mean_abs_diff(bp, nu));
            assert!(relative_error(bp, nu) < 1e-5, "{name}: {}", relative_error(bp, nu));
        }
    }

    #[test]
    fn flat_batches_must_be_shaped_first() {
        let mut model = SimpleConvNet::gradient_check().build::<f32>(0).unwrap();
        let mut x = Tensor::<f32>::zeros(&[3, 100]);
        assert!(model.predict(&x).is_err(), "a flat batch is refused, not a panic");
        model.shape_batch(&mut x).unwrap();
        assert_eq!(x.shape(), &[3, 1, 10, 10]);
        assert_eq!(model.predict(&x).unwrap().shape(), &[3, 10]);
    }
}
