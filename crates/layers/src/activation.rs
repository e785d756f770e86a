use crate::LayerDef;
use std::fmt;
use std::str::FromStr;

/// The hidden-layer nonlinearity of an [`crate::Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `max(0, x)`, a [`crate::Relu`] layer (the default).
    #[default]
    Relu,
    /// `1 / (1 + exp(-x))`, a [`crate::Sigmoid`] layer.
    Sigmoid,
}

impl Activation {
    /// The activation as a layer of a [`crate::NetSpec`].
    pub fn def(self) -> LayerDef {
        match self {
            Activation::Relu => LayerDef::Relu,
            Activation::Sigmoid => LayerDef::Sigmoid,
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

/// Parses `relu` or `sigmoid`, in any case; the error names both choices.
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
