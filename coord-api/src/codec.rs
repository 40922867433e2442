//! Typed values as every family hands them to its backend: JSON
//! (serde_json), checked when written to read back as their type
//! (decision 0055).

use serde::{Serialize, de::DeserializeOwned};

/// `value` as JSON; `Err` with the reason (for the caller's
/// `InvalidArgument`, which names what it writes) when it does not encode,
/// or does not read back as `T`. serde_json writes what JSON cannot carry
/// (a NaN or infinite float) as `null`, which no reader of a `T` decodes:
/// stored, such a value would fail every reader of it, not its writer.
pub(crate) fn encode<T: Serialize + DeserializeOwned>(value: &T) -> Result<Vec<u8>, String> {
    let bytes = serde_json::to_vec(value).map_err(|e| format!("does not encode: {e}"))?;
    match serde_json::from_slice::<T>(&bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => Err(format!(
            "does not read back as {} once encoded as JSON (which has no NaN or infinite \
             numbers): {e}",
            std::any::type_name::<T>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_json_cannot_carry_back_is_refused_naming_the_type() {
        assert_eq!(encode(&1.5f64).unwrap(), b"1.5");
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = encode(&v).unwrap_err();
            assert!(e.contains("does not read back as f64"), "{e}");
        }
        // Inside a structure too, and for `f32`.
        let e = encode(&vec![(1u8, f32::NAN)]).unwrap_err();
        assert!(e.contains("f32"), "{e}");
        // An `Option` reads `null` back as `None`: a different value, refused
        // only where it does not decode; this one does.
        assert_eq!(encode(&Some(f64::NAN)).unwrap(), b"null");
    }
}
