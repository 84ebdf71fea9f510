//! Validating value types for configuration keys. Each checks itself when it is
//! deserialized, so a key's rule lives with its type and a file, the command line
//! and the printed effective configuration all go through the same definition.

use std::borrow::Borrow;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::{parse_aid, parse_listen, validate_connstring, validate_log_level, validate_origin};
use crate::bus::Scopes;
use crate::server::users;

/// A string checked by `check` when deserialized, and shown as written.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` as a configuration file would.
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map(|()| $name(s))
            }

            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::new(String::deserialize(d)?).map_err(de::Error::custom)
            }
        }
    };
}

checked_string!(
    /// One exact web origin (`https://host[:port]`).
    Origin,
    validate_origin
);
checked_string!(
    /// A libnfc connstring (`driver:port[:…]`).
    Connstring,
    validate_connstring
);
checked_string!(
    /// A log level or a tracing filter directive.
    LogLevel,
    validate_log_level
);
checked_string!(
    /// An OS account (name or uid) that exists when the configuration is read, so a
    /// typo stops the daemon at start instead of silently locking a user out.
    UserName,
    |u| users::resolve_user(u).map(|_| ())
);
checked_string!(
    /// An OS group (name or gid) that exists when the configuration is read.
    GroupName,
    |g| users::resolve_group(g).map(|_| ())
);

/// `listen`: a loopback address and port, written `127.0.0.1:PORT`, `[::1]:PORT` or
/// `localhost:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub SocketAddr);

impl Deref for Listen {
    type Target = SocketAddr;
    fn deref(&self) -> &SocketAddr {
        &self.0
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Listen {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_listen(&String::deserialize(d)?)
            .map(Listen)
            .map_err(de::Error::custom)
    }
}

/// A phone-profile AID: its bytes, checked once at parse (shown as uppercase hex,
/// however it was spaced or cased in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aid(Vec<u8>);

impl Aid {
    /// Checks `s` (hex, spaces allowed).
    pub fn new(s: &str) -> Result<Aid, String> {
        parse_aid(s).map(Aid)
    }

    /// The AID as uppercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(&self.0)
    }

    /// The AID's bytes, as sent in SELECT.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<&str> for Aid {
    fn eq(&self, other: &&str) -> bool {
        self.to_hex() == *other
    }
}

impl Serialize for Aid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Aid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Aid::new(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// An origin's scope names (`identity`, `nir`, `ins`, `sign`), checked, with the
/// set they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeNames {
    names: Vec<String>,
    scopes: Scopes,
}

impl ScopeNames {
    /// Checks the names.
    pub fn new(names: Vec<String>) -> Result<ScopeNames, String> {
        Scopes::parse_list(&names).map(|scopes| ScopeNames { names, scopes })
    }

    /// The scopes the names mean.
    pub fn scopes(&self) -> Scopes {
        self.scopes
    }
}

impl Serialize for ScopeNames {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ScopeNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ScopeNames::new(Vec::<String>::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A whole number no smaller than `MIN` (counts, sizes, milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AtLeast<const MIN: u64>(u64);

impl<const MIN: u64> AtLeast<MIN> {
    /// Checks `v`.
    pub fn new(v: u64) -> Result<Self, String> {
        match v {
            v if v >= MIN => Ok(AtLeast(v)),
            _ if MIN == 1 => Err("must be greater than 0".into()),
            _ => Err(format!("must be at least {MIN}")),
        }
    }

    /// The value.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The value as a `usize`, saturating (only a 32-bit target could saturate).
    pub fn usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The value as a `u32`, saturating.
    pub fn u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// A built-in default; `v` must satisfy the bound (checked by the defaults test).
    pub(super) const fn default_of(v: u64) -> Self {
        AtLeast(v)
    }
}

impl<const MIN: u64> PartialEq<u64> for AtLeast<MIN> {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

impl<const MIN: u64> Serialize for AtLeast<MIN> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de, const MIN: u64> Deserialize<'de> for AtLeast<MIN> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AtLeast::new(u64::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_and_explained() {
        assert_eq!(AtLeast::<1>::new(0), Err("must be greater than 0".into()));
        assert_eq!(AtLeast::<10>::new(9), Err("must be at least 10".into()));
        assert_eq!(AtLeast::<10>::new(10).map(AtLeast::get), Ok(10));
        assert_eq!(AtLeast::<1>::new(u64::MAX).map(AtLeast::u32), Ok(u32::MAX));
    }

    #[test]
    fn strings_check_themselves() {
        assert!(Origin::new("https://a.example").is_ok());
        assert!(Origin::new("https://a.example/").is_err());
        assert!(Connstring::new("pn532_uart:/dev/ttyUSB0").is_ok());
        assert!(Connstring::new("/dev/ttyUSB0").is_err());
        assert_eq!(
            Aid::new("f0 76 62 72 69 64 67 65 01").map(|a| a.bytes().to_vec()),
            Ok(b"\xF0vbridge\x01".to_vec())
        );
        assert_eq!(
            Aid::new("f0766272696467650 1").map(|a| a.to_hex()),
            Ok("F07662726964676501".into())
        );
        assert!(ScopeNames::new(vec!["names".into()]).is_err());
    }
}
