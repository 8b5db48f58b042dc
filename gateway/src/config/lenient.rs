//! Reading a config file written by a newer release (after a rollback) with this release's
//! types: every struct drops the keys it does not declare, instead of refusing them as
//! `deny_unknown_fields` makes the normal parse do, and the dropped keys are reported.
//!
//! A deserializer over `toml::Value` that hands each struct only its own fields (serde
//! tells `deserialize_struct` which those are) and passes everything else through.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::cell::RefCell;
use toml::Value;

type Error = toml::de::Error;

/// Deserializes `T` from `table`, leaving out unknown keys; returns them as dotted paths.
pub(super) fn from_table<T: DeserializeOwned>(
    table: toml::Table,
) -> Result<(T, Vec<String>), Error> {
    let ignored = RefCell::new(Vec::new());
    let t = T::deserialize(Lenient {
        value: Value::Table(table),
        path: String::new(),
        ignored: &ignored,
    })?;
    Ok((t, ignored.into_inner()))
}

struct Lenient<'a> {
    value: Value,
    path: String,
    ignored: &'a RefCell<Vec<String>>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> de::Deserializer<'de> for Lenient<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Table(t) => visitor.visit_map(Map {
                entries: t.into_iter(),
                pending: None,
                path: self.path,
                ignored: self.ignored,
            }),
            Value::Array(a) => visitor.visit_seq(Seq {
                items: a.into_iter().enumerate(),
                path: self.path,
                ignored: self.ignored,
            }),
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Value::Table(mut t) => {
                t.retain(|k, _| {
                    let known = fields.iter().any(|f| **f == *k);
                    if !known {
                        self.ignored.borrow_mut().push(join(&self.path, k));
                    }
                    known
                });
                Lenient {
                    value: Value::Table(t),
                    ..self
                }
                .deserialize_any(visitor)
            }
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.value.deserialize_enum(name, variants, visitor)
    }

    // TOML has no null: a present key is always Some.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 char str string unit seq
        bytes byte_buf map unit_struct tuple_struct tuple ignored_any identifier
    }
}

struct Map<'a> {
    entries: toml::map::IntoIter<String, Value>,
    pending: Option<(String, Value)>,
    path: String,
    ignored: &'a RefCell<Vec<String>>,
}

impl<'de> de::MapAccess<'de> for Map<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(k.clone().into_deserializer())?;
        self.pending = Some((k, v));
        Ok(Some(key))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (k, value) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("value asked for before its key"))?;
        seed.deserialize(Lenient {
            value,
            path: join(&self.path, &k),
            ignored: self.ignored,
        })
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::vec::IntoIter<Value>>,
    path: String,
    ignored: &'a RefCell<Vec<String>>,
}

impl<'de> de::SeqAccess<'de> for Seq<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        seed.deserialize(Lenient {
            value,
            path: format!("{}[{i}]", self.path),
            ignored: self.ignored,
        })
        .map(Some)
    }
}
