//! A serde [`Deserializer`] over a located YAML [`Node`] tree whose errors
//! say *where* (the field path in the file) and *what* (a [`Problem`]
//! classified by kind, never by its text).
//!
//! Values the loader has already reported can be left out of a pass
//! ([`Removed`]), so that deserializing again finds the next problem instead
//! of the same one: that is how [`crate::load`] reports every problem at once.
//! Sequence elements keep their index in the file when earlier ones are left out.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess, SeqAccess, Unexpected,
    Visitor,
};

use crate::load::{FieldPath, Node, NodeKind, Segment};

/// Paths (in the file) of values left out of a deserialization pass.
pub type Removed = BTreeSet<FieldPath>;

/// What is wrong with a value. The offending value itself is kept apart
/// (`found`) so that rendering can leave it out for fields that may hold a
/// secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The value has the wrong YAML type.
    InvalidType {
        /// The kind of value found (`an integer`, `a mapping`, …), never the value.
        found: &'static str,
        /// What the field takes.
        expected: String,
    },
    /// The value has the right type but is not acceptable.
    InvalidValue {
        /// The value as written.
        found: String,
        /// What the field takes.
        expected: String,
    },
    /// Not one of the allowed names.
    UnknownVariant {
        /// The value as written.
        found: String,
        /// The allowed names.
        expected: &'static [&'static str],
    },
    /// A mapping key the format does not define (the key ends the path).
    UnknownField {
        /// The keys defined here.
        expected: &'static [&'static str],
    },
    /// A required field is absent (the path ends at the mapping that lacks it).
    MissingField {
        /// The absent field.
        field: &'static str,
    },
    /// A list of the wrong length.
    InvalidLength {
        /// Its length.
        found: usize,
        /// What the field takes.
        expected: String,
    },
    /// Anything else a type's own deserializer reports.
    Other(String),
}

impl Problem {
    /// The message for this problem; `echo` says whether the offending value
    /// may be shown (it is not for fields that may hold a secret).
    pub fn message(&self, echo: bool) -> String {
        match self {
            Self::InvalidType { found, expected } => format!("expected {expected}, found {found}"),
            Self::InvalidValue { found, expected } if echo => {
                format!("invalid value {found}, expected {expected}")
            }
            Self::InvalidValue { expected, .. } => format!("invalid value, expected {expected}"),
            Self::UnknownVariant { found, expected } if echo => {
                format!("unknown value {found:?}, expected {}", one_of(expected))
            }
            Self::UnknownVariant { expected, .. } => {
                format!("unknown value, expected {}", one_of(expected))
            }
            Self::UnknownField { expected } => {
                format!("unknown field, expected {}", one_of(expected))
            }
            Self::MissingField { .. } => "missing required field".into(),
            Self::InvalidLength { found, expected } => {
                format!("expected {expected}, found {found} items")
            }
            Self::Other(message) if echo => message.clone(),
            Self::Other(_) => "invalid value".into(),
        }
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "no fields here".into(),
        [only] => only.to_string(),
        _ => format!("one of {}", names.join(", ")),
    }
}

/// A [`Problem`] and the path of the value it is about.
#[derive(Debug)]
pub struct Error {
    /// Where; set by the innermost deserializer the error passes through.
    pub path: Option<FieldPath>,
    /// What.
    pub problem: Problem,
}

impl Error {
    fn new(problem: Problem) -> Self {
        Self {
            path: None,
            problem,
        }
    }

    fn at(mut self, path: &FieldPath) -> Self {
        if self.path.is_none() {
            self.path = Some(path.clone());
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message(false))
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(Problem::Other(msg.to_string()))
    }
    fn invalid_type(unexp: Unexpected, exp: &dyn Expected) -> Self {
        Self::new(Problem::InvalidType {
            found: kind_of(&unexp),
            expected: expected_text(exp),
        })
    }
    fn invalid_value(unexp: Unexpected, exp: &dyn Expected) -> Self {
        let found = match unexp {
            Unexpected::Str(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Self::new(Problem::InvalidValue {
            found,
            expected: expected_text(exp),
        })
    }
    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Self::new(Problem::InvalidLength {
            found: len,
            expected: expected_text(exp),
        })
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Problem::UnknownVariant {
            found: variant.to_string(),
            expected,
        })
    }
    fn unknown_field(_field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Problem::UnknownField { expected })
    }
    fn missing_field(field: &'static str) -> Self {
        Self::new(Problem::MissingField { field })
    }
    fn duplicate_field(_field: &'static str) -> Self {
        Self::new(Problem::Other("field given twice".into()))
    }
}

/// The kind of an unexpected value, without the value.
fn kind_of(unexp: &Unexpected) -> &'static str {
    match unexp {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a number",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit | Unexpected::Option => "nothing (null)",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a mapping",
        _ => "another kind of value",
    }
}

/// What a type expects, in the file's words (`struct X` is a mapping to the user).
fn expected_text(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    if text.starts_with("struct ") || text.starts_with("a map") {
        "a mapping".into()
    } else if text == "a sequence" {
        "a list".into()
    } else {
        text
    }
}

/// Deserializes `T` from `node` (found at `path`), leaving out `removed` values.
pub fn from_node<T: de::DeserializeOwned>(
    node: &Node,
    path: &FieldPath,
    removed: &Removed,
) -> Result<T, Error> {
    T::deserialize(NodeDe {
        node,
        path: path.clone(),
        removed,
    })
}

struct NodeDe<'a> {
    node: &'a Node,
    path: FieldPath,
    removed: &'a Removed,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node, segment: Segment) -> Self {
        Self {
            node,
            path: self.path.join(segment),
            removed: self.removed,
        }
    }
}

impl<'de> Deserializer<'de> for NodeDe<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::UInt(u) => visitor.visit_u64(*u),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s) => visitor.visit_borrowed_str(s),
            NodeKind::Seq(items) => visitor.visit_seq(Items {
                parent: &self,
                items: items.iter().enumerate(),
            }),
            NodeKind::Map(entries) => visitor.visit_map(Entries {
                parent: &self,
                entries: entries.iter(),
                value: None,
            }),
        };
        result.map_err(|err| err.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if matches!(self.node.kind, NodeKind::Null) {
            visitor.visit_none()
        } else {
            let path = self.path.clone();
            visitor.visit_some(self).map_err(|err| err.at(&path))
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let path = self.path.clone();
        visitor
            .visit_newtype_struct(self)
            .map_err(|err| err.at(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // serde would also read a struct from a list of its fields in order;
        // the format only writes mappings.
        match &self.node.kind {
            NodeKind::Seq(_) => Err(de::Error::invalid_type(Unexpected::Seq, &visitor))
                .map_err(|err: Error| err.at(&self.path)),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // Every enum of the format is a plain name.
        match &self.node.kind {
            NodeKind::Str(s) => visitor
                .visit_enum(UnitVariant(s))
                .map_err(|err| err.at(&self.path)),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map
        identifier ignored_any
    }
}

struct UnitVariant<'a>(&'a str);

impl<'de> EnumAccess<'de> for UnitVariant<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let name = de::value::BorrowedStrDeserializer::<'de, Error>::new(self.0);
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _seed: S) -> Result<S::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::Str(self.0),
            &"a mapping",
        ))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(Unexpected::Str(self.0), &"a list"))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::invalid_type(
            Unexpected::Str(self.0),
            &"a mapping",
        ))
    }
}

struct Items<'p, 'de> {
    parent: &'p NodeDe<'de>,
    items: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
}

impl<'de> SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        for (index, node) in self.items.by_ref() {
            let child = self.parent.child(node, Segment::Index(index));
            if !self.parent.removed.contains(&child.path) {
                return seed.deserialize(child).map(Some);
            }
        }
        Ok(None)
    }
}

struct Entries<'p, 'de> {
    parent: &'p NodeDe<'de>,
    entries: std::slice::Iter<'de, (String, Node)>,
    value: Option<NodeDe<'de>>,
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        for (key, node) in self.entries.by_ref() {
            let child = self.parent.child(node, Segment::Key(key.clone()));
            if self.parent.removed.contains(&child.path) {
                continue;
            }
            let name = de::value::BorrowedStrDeserializer::<'de, Error>::new(key);
            let key = seed.deserialize(name).map_err(|err| err.at(&child.path))?;
            self.value = Some(child);
            return Ok(Some(key));
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        match self.value.take() {
            Some(child) => seed.deserialize(child),
            None => Err(de::Error::custom("value requested before its key")),
        }
    }
}
