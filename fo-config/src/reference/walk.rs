//! The config model's keys, listed by serde itself.
//!
//! A derived `Deserialize` of a struct hands its deserializer the list of its field
//! names (`deserialize_struct(name, fields, visitor)`), and of an enum the list of its
//! variants. [`Walk`] is a deserializer that records those lists instead of reading
//! any input: run over a raw table (e.g. [`RawNode`]) with an empty `focus`, it records
//! the table's keys; with `focus = ["nat_timeouts"]` it feeds the visitor that one key
//! and records the keys of the value's type, and so on down. A scalar ends the walk
//! (with an error nobody needs to read: everything worth knowing was recorded before).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde_spanned::de::SpannedDeserializer;

use crate::raw::{RawCheck, RawNode, RawRouter, RawService};

/// The top-level tables, as `validate::parse` accepts them, and their raw types.
pub(super) const TABLES: [(&str, Explore); 4] = [
    ("node", explore::<RawNode>),
    ("router", explore::<RawRouter>),
    ("service", explore::<RawService>),
    ("check", explore::<RawCheck>),
];

type Explore = fn(&str, &[&'static str], &RefCell<Model>);

/// What the walk found.
#[derive(Debug, Default)]
pub(super) struct Model {
    /// Every key as a dotted path from its table (`node.nat_timeouts.syn`).
    pub keys: BTreeSet<String>,
    /// Enumerated keys and the values they accept.
    pub values: BTreeMap<String, Vec<&'static str>>,
    /// Keys whose value is a map the walk cannot list (a map type, a flattened struct).
    pub opaque: BTreeSet<String>,
    /// The fields of the struct at the focus of the last run.
    fields: Vec<&'static str>,
}

/// Walk every table down to its scalars.
pub(super) fn model() -> Model {
    let model = RefCell::new(Model::default());
    for (table, explore) in TABLES {
        let mut todo: Vec<Vec<&'static str>> = vec![Vec::new()];
        while let Some(focus) = todo.pop() {
            model.borrow_mut().fields.clear();
            explore(table, &focus, &model);
            for f in std::mem::take(&mut model.borrow_mut().fields) {
                let mut next = focus.clone();
                next.push(f);
                todo.push(next);
            }
        }
    }
    model.into_inner()
}

fn explore<T: DeserializeOwned>(table: &str, focus: &[&'static str], model: &RefCell<Model>) {
    let _ = T::deserialize(Walk {
        path: table.to_owned(),
        focus,
        model,
    });
}

struct Walk<'a> {
    path: String,
    /// The keys still to descend through.
    focus: &'a [&'static str],
    model: &'a RefCell<Model>,
}

impl Walk<'_> {
    fn child(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

#[derive(Debug)]
pub(super) struct Stop(String);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

impl<'de> de::Deserializer<'de> for Walk<'_> {
    type Error = Stop;

    /// A scalar, or a self-describing value: nothing below it is a key.
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop(format!("{}: a value", self.path)))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    /// An array: its one element stands for all of them (`service.backends.address`).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(One(Some(self)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        if self.focus.is_empty() {
            self.model
                .borrow_mut()
                .values
                .insert(self.path.clone(), variants.to_vec());
        }
        Err(Stop(format!("{}: an enumerated value", self.path)))
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        self.model.borrow_mut().opaque.insert(self.path.clone());
        Err(Stop(format!("{}: a map", self.path)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if serde_spanned::de::is_spanned(name) {
            // toml::Spanned<T>: transparent, the walk goes on into T.
            return visitor.visit_map(SpannedDeserializer::<Walk<'_>, Stop>::new(self, 0..0));
        }
        match self.focus.split_first() {
            None => {
                let mut m = self.model.borrow_mut();
                for f in fields {
                    m.keys.insert(self.child(f));
                }
                m.fields = fields.to_vec();
                drop(m);
                visitor.visit_map(Entry(None))
            }
            Some((key, rest)) => {
                let value = Walk {
                    path: self.child(key),
                    focus: rest,
                    model: self.model,
                };
                visitor.visit_map(Entry(Some((key, Some(value)))))
            }
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

impl<'de, 'a> IntoDeserializer<'de, Stop> for Walk<'a> {
    type Deserializer = Walk<'a>;
    fn into_deserializer(self) -> Walk<'a> {
        self
    }
}

/// A table with at most one key.
struct Entry<'a>(Option<(&'static str, Option<Walk<'a>>)>);

impl<'de> de::MapAccess<'de> for Entry<'_> {
    type Error = Stop;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match &self.0 {
            Some((key, Some(_))) => seed.deserialize((*key).into_deserializer()).map(Some),
            _ => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let walk = self
            .0
            .as_mut()
            .and_then(|(_, w)| w.take())
            .ok_or_else(|| Stop("a value without a key".into()))?;
        seed.deserialize(walk)
    }
}

/// An array of one element.
struct One<'a>(Option<Walk<'a>>);

impl<'de> de::SeqAccess<'de> for One<'_> {
    type Error = Stop;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.0.take() {
            Some(walk) => seed.deserialize(walk).map(Some),
            None => Ok(None),
        }
    }
}
