use crate::{Layer, Relu, Sigmoid};
use std::fmt;
use std::str::FromStr;
use tensor::Element;

/// The hidden-layer nonlinearity of an [`crate::Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Relu,
    Sigmoid,
}

impl Activation {
    pub(crate) fn layer<T: Element>(self) -> Box<dyn Layer<T>> {
        match self {
            Activation::Relu => Box::new(Relu),
            Activation::Sigmoid => Box::new(Sigmoid),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
        })
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "relu" => Ok(Activation::Relu),
            "sigmoid" => Ok(Activation::Sigmoid),
            other => Err(format!("unknown activation '{other}'; use relu or sigmoid")),
        }
    }
}
