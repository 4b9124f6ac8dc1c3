//! How a vector may be written in a JSON body: an array of numbers, or a
//! string holding the base64 of its little-endian f32s (the form OpenAI's
//! embeddings API answers with `encoding_format: "base64"`). The string is
//! about a third the size of the numbers and decodes without parsing a
//! float: bulk loaders send it.

use std::fmt;

use base64::Engine;
use serde::Deserializer;
use serde::de::{self, SeqAccess, Visitor};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

/// `#[serde(default, deserialize_with = "vector_form::optional")]`: a
/// vector in either form; `null` or absent is `None`.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<f32>>, D::Error> {
    d.deserialize_any(Form)
}

/// Decodes the base64 form: standard alphabet, with or without padding.
pub fn decode(s: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("a vector string must be base64 of little-endian f32s: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "a vector string must be base64 of little-endian f32s: {} bytes is not a whole number of f32s",
            bytes.len()
        ));
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// The base64 form of a vector, as [`decode`] reads it.
pub fn encode(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct Form;

impl<'de> Visitor<'de> for Form {
    type Value = Option<Vec<f32>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers, or a string of base64 little-endian f32s")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(Form)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        decode(s).map(Some).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(x) = seq.next_element::<f32>()? {
            v.push(x);
        }
        Ok(Some(v))
    }
}

/// The OpenAPI schema of either form (`schema_with`).
pub fn schema() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ArrayBuilder::new().items(
            ObjectBuilder::new().schema_type(Type::Number).format(Some(SchemaFormat::KnownFormat(KnownFormat::Float))),
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_encoding("base64")
                .description(Some("base64 of the vector's little-endian f32s (4 bytes per component)")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct P {
        #[serde(default, deserialize_with = "super::optional")]
        vector: Option<Vec<f32>>,
    }

    fn parse(s: &str) -> Result<Option<Vec<f32>>, String> {
        serde_json::from_str::<P>(s).map(|p| p.vector).map_err(|e| e.to_string())
    }

    #[test]
    fn both_forms_give_the_same_vector() {
        let v = vec![0.25f32, -1.5, 3.0e-8, 1234.5];
        let numbers = parse(&format!("{{\"vector\": {}}}", serde_json::to_string(&v).unwrap())).unwrap();
        let text = parse(&format!("{{\"vector\": \"{}\"}}", super::encode(&v))).unwrap();
        assert_eq!(numbers.as_deref(), Some(&v[..]));
        assert_eq!(text.as_deref(), Some(&v[..]));
        // Without padding too.
        let padded = super::encode(&v[..1]);
        assert!(padded.ends_with("=="), "{padded}");
        assert_eq!(parse(&format!("{{\"vector\": \"{}\"}}", padded.trim_end_matches('='))).unwrap().unwrap(), &v[..1]);
    }

    #[test]
    fn null_or_absent_is_none() {
        assert_eq!(parse("{}").unwrap(), None);
        assert_eq!(parse("{\"vector\": null}").unwrap(), None);
    }

    #[test]
    fn bad_forms_are_refused_with_the_reason() {
        assert!(parse("{\"vector\": \"AAAA\"}").unwrap_err().contains("not a whole number of f32s"));
        assert!(parse("{\"vector\": \"not base64!\"}").unwrap_err().contains("base64"));
        assert!(parse("{\"vector\": 7}").unwrap_err().contains("base64 little-endian f32s"));
        assert!(parse("{\"vector\": [1, \"x\"]}").is_err());
    }
}
