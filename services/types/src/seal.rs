//! HPKE envelopes (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode).
//!
//! A sealed box is `enc (32 bytes) || ciphertext`. The `info` string names what the box is for,
//! so a box sealed as a deposit cannot be replayed as a release or a result.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

type Kem = X25519HkdfSha256;

/// Context for the dataset keys an owner deposits with a key service.
pub const INFO_DEPOSIT: &[u8] = b"strongroom/v1/deposit";
/// Context for the keys and task facts a key service releases to an enclave.
pub const INFO_RELEASE: &[u8] = b"strongroom/v1/release";
/// Context for the owner's local backup of a dataset's keys.
pub const INFO_BACKUP: &[u8] = b"strongroom/v1/backup";
/// Context for the result an enclave seals to the analyst.
pub const INFO_RESULT: &[u8] = b"strongroom/v1/result";

const ENC_LEN: usize = 32;

/// An X25519 public key (the recipient of sealed boxes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct X25519PublicKey(pub [u8; 32]);

/// An X25519 secret key, wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct X25519SecretKey([u8; 32]);

impl std::fmt::Debug for X25519SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X25519SecretKey(..)")
    }
}

impl X25519SecretKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let (sk, _) = Kem::gen_keypair();
        Self(sk.to_bytes().into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::BadLength {
            what: "X25519 secret key",
            expected: 32,
            got: bytes.len(),
        })?;
        Ok(Self(bytes))
    }

    /// Reads a key file written by [`Self::write_new`] (the key in hex).
    pub fn read_file(path: &std::path::Path) -> Result<Self> {
        let err = |reason: String| Error::KeyFile { path: path.display().to_string(), reason };
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
        let bytes = zeroize::Zeroizing::new(hex::decode(text.trim()).map_err(|_| err("not hex".into()))?);
        Self::from_bytes(&bytes).map_err(|e| err(e.to_string()))
    }

    /// Writes the key, in hex, to a new file only its owner can read (mode 0600); an existing
    /// file is never overwritten.
    pub fn write_new(&self, path: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let err = |reason: String| Error::KeyFile { path: path.display().to_string(), reason };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
        file.write_all(hex::encode(self.0).as_bytes()).map_err(|e| err(e.to_string()))?;
        file.sync_all().map_err(|e| err(e.to_string()))
    }

    /// The key in `path`, generated and written there on first use.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self> {
        if path.exists() {
            return Self::read_file(path);
        }
        let key = Self::generate();
        key.write_new(path)?;
        Ok(key)
    }

    pub fn public_key(&self) -> X25519PublicKey {
        let pk = Kem::sk_to_pk(&self.kem_key());
        X25519PublicKey(pk.to_bytes().into())
    }

    fn kem_key(&self) -> <Kem as hpke::Kem>::PrivateKey {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&self.0).expect("32 bytes is a valid X25519 key")
    }
}

impl X25519PublicKey {
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::BadLength {
            what: "X25519 public key",
            expected: 32,
            got: bytes.len(),
        })?;
        Ok(Self(bytes))
    }

    pub fn to_b256(self) -> alloy_primitives::B256 {
        alloy_primitives::B256::from(self.0)
    }
}

impl std::fmt::Display for X25519PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl std::str::FromStr for X25519PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bytes = hex::decode(s.trim_start_matches("0x"))
            .map_err(|e| Error::Malformed { what: "X25519 public key", reason: e.to_string() })?;
        Self::from_slice(&bytes)
    }
}

impl Serialize for X25519PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for X25519PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `enc || ciphertext` of one HPKE single-shot seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedBox(pub Vec<u8>);

impl SealedBox {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for SealedBox {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        alloy_primitives::Bytes::copy_from_slice(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SealedBox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Self(alloy_primitives::Bytes::deserialize(d)?.to_vec()))
    }
}

/// The AAD of keys sealed with [`INFO_DEPOSIT`] or [`INFO_BACKUP`]: the dataset id and the
/// manifest digest of the data version they encrypt, so keys cannot be passed off as another
/// dataset's or another version's.
pub fn key_set_aad(dataset: crate::DatasetId, manifest: crate::ManifestDigest) -> Vec<u8> {
    [dataset.as_slice(), manifest.as_slice()].concat()
}

/// Seals `plaintext` to `recipient` under the context `info`; `aad` is authenticated, not hidden.
pub fn seal(recipient: &X25519PublicKey, info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<SealedBox> {
    seal_in(&OpModeS::Base, recipient, info, aad, plaintext)
}

/// Seals `plaintext` to `recipient` as `sender` (HPKE auth mode): only the holder of `sender`'s
/// secret can have sealed it, and [`open_from`] opens it only as coming from `sender`'s public key.
pub fn seal_from(
    recipient: &X25519PublicKey,
    sender: &X25519SecretKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox> {
    let sender_pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&sender.public_key().0)
        .map_err(|e| Error::SealFailed(e.to_string()))?;
    seal_in(&OpModeS::Auth((sender.kem_key(), sender_pk)), recipient, info, aad, plaintext)
}

fn seal_in(
    mode: &OpModeS<'_, Kem>,
    recipient: &X25519PublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient.0).map_err(|e| Error::SealFailed(e.to_string()))?;
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(mode, &pk, info, plaintext, aad)
        .map_err(|e| Error::SealFailed(e.to_string()))?;
    let mut out = Vec::with_capacity(ENC_LEN + ct.len());
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&ct);
    Ok(SealedBox(out))
}

/// Opens a box sealed with [`seal`]; `what` names the box in the error.
pub fn open(
    recipient: &X25519SecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &SealedBox,
    what: &'static str,
) -> Result<Vec<u8>> {
    open_in(&OpModeR::Base, recipient, info, aad, sealed, what)
}

/// Opens a box sealed with [`seal_from`] by `sender`; a box sealed by anyone else does not open.
pub fn open_from(
    recipient: &X25519SecretKey,
    sender: &X25519PublicKey,
    info: &[u8],
    aad: &[u8],
    sealed: &SealedBox,
    what: &'static str,
) -> Result<Vec<u8>> {
    let sender = <Kem as hpke::Kem>::PublicKey::from_bytes(&sender.0).map_err(|_| Error::OpenFailed(what))?;
    open_in(&OpModeR::Auth(sender), recipient, info, aad, sealed, what)
}

fn open_in(
    mode: &OpModeR<'_, Kem>,
    recipient: &X25519SecretKey,
    info: &[u8],
    aad: &[u8],
    sealed: &SealedBox,
    what: &'static str,
) -> Result<Vec<u8>> {
    let bytes = sealed.as_bytes();
    if bytes.len() < ENC_LEN {
        return Err(Error::SealedBoxTooShort(bytes.len()));
    }
    let (enc, ct) = bytes.split_at(ENC_LEN);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| Error::OpenFailed(what))?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(mode, &recipient.kem_key(), &enc, info, ct, aad)
        .map_err(|_| Error::OpenFailed(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_sealed_from_a_sender_opens_only_as_from_that_sender() {
        let (recipient, sender, other) =
            (X25519SecretKey::generate(), X25519SecretKey::generate(), X25519SecretKey::generate());
        let sealed = seal_from(&recipient.public_key(), &sender, b"info", b"aad", b"keys").unwrap();
        let opened = open_from(&recipient, &sender.public_key(), b"info", b"aad", &sealed, "release").unwrap();
        assert_eq!(opened, b"keys");
        let err = open_from(&recipient, &other.public_key(), b"info", b"aad", &sealed, "release").unwrap_err();
        assert_eq!(err.to_string(), Error::OpenFailed("release").to_string());
        // Anyone can seal to the recipient in base mode; that is not a box from the sender.
        let anyone = seal(&recipient.public_key(), b"info", b"aad", b"keys").unwrap();
        assert!(open_from(&recipient, &sender.public_key(), b"info", b"aad", &anyone, "release").is_err());
        assert!(open(&recipient, b"info", b"aad", &sealed, "release").is_err(), "and the modes do not mix");
    }

    #[test]
    fn seal_open_round_trip_and_context_binding() {
        let sk = X25519SecretKey::generate();
        let sealed = seal(&sk.public_key(), INFO_RESULT, b"task-1", b"hello").unwrap();
        assert_eq!(open(&sk, INFO_RESULT, b"task-1", &sealed, "result").unwrap(), b"hello");

        let err = open(&sk, INFO_RELEASE, b"task-1", &sealed, "release").unwrap_err();
        assert_eq!(err.to_string(), "cannot open sealed release: wrong key, wrong context, or tampered ciphertext");
        assert!(open(&sk, INFO_RESULT, b"task-2", &sealed, "result").is_err(), "aad is bound");

        let other = X25519SecretKey::generate();
        assert!(open(&other, INFO_RESULT, b"task-1", &sealed, "result").is_err());

        let mut tampered = sealed.clone();
        let last = tampered.0.len() - 1;
        tampered.0[last] ^= 1;
        assert!(open(&sk, INFO_RESULT, b"task-1", &tampered, "result").is_err());
        assert!(matches!(open(&sk, INFO_RESULT, b"", &SealedBox(vec![1, 2]), "x"), Err(Error::SealedBoxTooShort(2))));
    }
}
