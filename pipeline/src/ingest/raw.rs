//! One mention record as it arrives, parsed straight from the body's bytes: the fields
//! vigie reads, each as whatever JSON type it was sent as (so validation can name the
//! field and say what is wrong), strings borrowed from the body where JSON allows it.
//! Unknown fields are skipped without being built. Parsing into `serde_json::Value` first
//! built a map with an owned key and value per field (6.5 % of vigie's CPU under load,
//! benches/README.md, "Profile").

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A field's value, by JSON type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<'a> {
    /// `null`.
    Null,
    /// A string.
    Str(Cow<'a, str>),
    /// A non-negative integer.
    Count(u64),
    /// Anything else (negative or fractional number, boolean, array, object).
    Other,
}

impl Field<'_> {
    /// The string, when the field is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The fields of a mention record (`None`: absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMention<'a> {
    /// `id`: the client's mention id.
    pub id: Option<Field<'a>>,
    /// `org_id`: refused unless it is the caller's.
    pub org_id: Option<Field<'a>>,
    /// `source_id`.
    pub source_id: Option<Field<'a>>,
    /// `text`.
    pub text: Option<Field<'a>>,
    /// `author`.
    pub author: Option<Field<'a>>,
    /// `url`.
    pub url: Option<Field<'a>>,
    /// `created_at`: RFC 3339.
    pub created_at: Option<Field<'a>>,
    /// `likes`.
    pub likes: Option<Field<'a>>,
    /// `shares`.
    pub shares: Option<Field<'a>>,
    /// `replies`.
    pub replies: Option<Field<'a>>,
    /// `author_followers`.
    pub author_followers: Option<Field<'a>>,
}

/// One record: an object, or something that is not one.
// Boxing the object would cost an allocation per record; the other variant is rare.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawRecord<'a> {
    /// A JSON object.
    Object(RawMention<'a>),
    /// Any other JSON value.
    NotObject,
}

/// A body in JSON framing: one record, or an array of them.
#[derive(Debug)]
pub struct OneOrMany<'a>(pub Vec<RawRecord<'a>>);

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(s)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Field::Count(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(u64::try_from(n).map_or(Field::Other, Field::Count))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads an object's entries into a [`RawMention`] (a repeated key keeps its last value,
/// as `serde_json::Value` does).
fn mention_from_map<'de, A: MapAccess<'de>>(mut a: A) -> Result<RawMention<'de>, A::Error> {
    let mut m = RawMention::default();
    while let Some(key) = a.next_key::<Cow<'de, str>>()? {
        let slot = match key.as_ref() {
            "id" => &mut m.id,
            "org_id" => &mut m.org_id,
            "source_id" => &mut m.source_id,
            "text" => &mut m.text,
            "author" => &mut m.author,
            "url" => &mut m.url,
            "created_at" => &mut m.created_at,
            "likes" => &mut m.likes,
            "shares" => &mut m.shares,
            "replies" => &mut m.replies,
            "author_followers" => &mut m.author_followers,
            _ => {
                a.next_value::<IgnoredAny>()?;
                continue;
            }
        };
        *slot = Some(a.next_value::<Field<'de>>()?);
    }
    Ok(m)
}

/// Accepts any JSON value as a record; `many` also unpacks a top-level array.
struct RecordVisitor {
    many: bool,
}

/// What [`RecordVisitor`] produced.
#[allow(clippy::large_enum_variant)]
enum Visited<'a> {
    One(RawRecord<'a>),
    Many(Vec<RawRecord<'a>>),
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Visited<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
        Ok(Visited::One(RawRecord::Object(mention_from_map(a)?)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
        if self.many {
            let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0));
            while let Some(r) = a.next_element::<RawRecord<'de>>()? {
                out.push(r);
            }
            Ok(Visited::Many(out))
        } else {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Visited::One(RawRecord::NotObject))
        }
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Visited::One(RawRecord::NotObject))
    }
}

impl<'de> Deserialize<'de> for RawRecord<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(RecordVisitor { many: false })? {
            Visited::One(r) => Ok(r),
            Visited::Many(_) => Err(de::Error::custom("unexpected array")),
        }
    }
}

impl<'de> Deserialize<'de> for OneOrMany<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OneOrMany(
            match d.deserialize_any(RecordVisitor { many: true })? {
                Visited::One(r) => vec![r],
                Visited::Many(v) => v,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> RawRecord<'_> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn fields_keep_their_json_type_and_strings_are_borrowed_when_unescaped() {
        let RawRecord::Object(m) = one(
            r#"{"text":"caf\u00e9","author":"@a","likes":3,"shares":-1,"replies":1.5,
                "url":null,"extra":{"deep":[1,{"x":2}]},"id":[1]}"#,
        ) else {
            panic!("an object");
        };
        assert_eq!(m.text, Some(Field::Str(Cow::Owned("café".into()))));
        assert!(matches!(m.author, Some(Field::Str(Cow::Borrowed("@a")))));
        assert_eq!(m.likes, Some(Field::Count(3)));
        assert_eq!(m.shares, Some(Field::Other));
        assert_eq!(m.replies, Some(Field::Other));
        assert_eq!(m.url, Some(Field::Null));
        assert_eq!(m.id, Some(Field::Other));
        assert_eq!(m.source_id, None);
    }

    #[test]
    fn a_body_is_one_record_or_an_array_of_them() {
        let many: OneOrMany = serde_json::from_str(r#"[{"text":"a"}, 3, [1], null]"#).unwrap();
        assert_eq!(many.0.len(), 4);
        assert!(matches!(many.0[0], RawRecord::Object(_)));
        assert!(many.0[1..].iter().all(|r| *r == RawRecord::NotObject));
        let single: OneOrMany = serde_json::from_str(r#"{"text":"a","text":"b"}"#).unwrap();
        let RawRecord::Object(m) = &single.0[0] else {
            panic!("an object");
        };
        assert_eq!(
            m.text,
            Some(Field::Str(Cow::Borrowed("b"))),
            "last value wins"
        );
        let scalar: OneOrMany = serde_json::from_str("\"hi\"").unwrap();
        assert_eq!(scalar.0, vec![RawRecord::NotObject]);
        assert!(serde_json::from_str::<OneOrMany>("[{").is_err());
    }
}
