//! Documents and descriptors (§5.3, §5.4): parsing, validation, canonical
//! serialisation and signing.
//!
//! A signed descriptor is a certificate (§5.2) over descriptor JSON, signed
//! once by the node's own identity key. A signed document is a certificate
//! over document JSON, signed by the authority; it embeds the signed
//! descriptors as base64 strings.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value};

use super::cert::{CertError, Certificate};
use super::json::{self, FieldErr, ObjectWriter};
use super::validate;

/// `Version` of document JSON.
pub const DOCUMENT_VERSION: &str = "document-v0";
/// `Version` of descriptor JSON.
pub const DESCRIPTOR_VERSION: &str = "v0";
/// The `Layer` of a provider descriptor.
pub const LAYER_PROVIDER: u8 = 255;
/// Length of a SharedRandomCommit (epoch u64be ‖ 32 bytes).
pub const SHARED_RANDOM_COMMIT_LENGTH: usize = 40;
/// Length of a SharedRandomValue.
pub const SHARED_RANDOM_VALUE_LENGTH: usize = 32;
/// How long past signing documents and descriptors stay valid: 3 periods + 10 min.
pub const CERT_LIFETIME_SECS: u64 = 3 * 10_800 + 600;

/// The certificate expiration for something signed at `now_unix` (§5.2).
pub fn expiration_for(now_unix: u64) -> i64 {
    i64::try_from(now_unix.saturating_add(CERT_LIFETIME_SECS)).unwrap_or(i64::MAX)
}

/// A node's descriptor, parsed (§5.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MixDescriptor {
    /// Node name; for a provider, the domain of user addresses.
    pub name: String,
    /// Ed25519 identity public key; also the Sphinx node id.
    pub identity_key: [u8; 32],
    /// X25519 link (wire handshake) public key.
    pub link_key: [u8; 32],
    /// X25519 Sphinx mix keys by epoch.
    pub mix_keys: BTreeMap<u64, [u8; 32]>,
    /// Transport name to `host:port` list.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Kaetzchen capability to parameters (with `endpoint`).
    pub kaetzchen: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// As signed: 0 for mixes, 255 for providers. In a parsed [`Document`]
    /// a mix's layer is set to its index in the topology (§5.4 step 6).
    pub layer: u8,
    /// Unused (0).
    pub load_weight: u8,
    /// The signed descriptor (certificate bytes) this was parsed from; empty
    /// for a descriptor built locally. [`sign_document`] embeds these bytes.
    pub signed: Vec<u8>,
}

/// The network parameters a document carries (§5.3): the one list of them,
/// shared by [`Document`], [`RawDocument`] and the testnet's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Parameters {
    /// Client packets per minute the providers enforce.
    pub send_rate_per_minute: u64,
    /// Per-hop delay rate (per ms).
    pub mu: f64,
    /// Cap on a sampled per-hop delay (ms).
    pub mu_max_delay: u64,
    /// Client send rate, message or decoy (per ms).
    pub lambda_p: f64,
    /// Cap on the LambdaP interval (ms).
    pub lambda_p_max_delay: u64,
    /// Client loop decoy rate (per ms).
    pub lambda_l: f64,
    /// Cap on the LambdaL interval (ms).
    pub lambda_l_max_delay: u64,
    /// Client drop decoy rate (per ms).
    pub lambda_d: f64,
    /// Cap on the LambdaD interval (ms).
    pub lambda_d_max_delay: u64,
    /// Mix decoy rate (per ms).
    pub lambda_m: f64,
    /// Cap on the LambdaM interval (ms).
    pub lambda_m_max_delay: u64,
}

impl Parameters {
    /// Reads the parameters from a document's JSON object (lenient).
    fn from_json(obj: &Map<String, Value>) -> Result<Parameters, DocumentError> {
        let u = |k: &'static str| json::uint(obj, k).map_err(doc_field(k));
        let f = |k: &'static str| json::float(obj, k).map_err(doc_field(k));
        Ok(Parameters {
            send_rate_per_minute: u("SendRatePerMinute")?,
            mu: f("Mu")?,
            mu_max_delay: u("MuMaxDelay")?,
            lambda_p: f("LambdaP")?,
            lambda_p_max_delay: u("LambdaPMaxDelay")?,
            lambda_l: f("LambdaL")?,
            lambda_l_max_delay: u("LambdaLMaxDelay")?,
            lambda_d: f("LambdaD")?,
            lambda_d_max_delay: u("LambdaDMaxDelay")?,
            lambda_m: f("LambdaM")?,
            lambda_m_max_delay: u("LambdaMMaxDelay")?,
        })
    }
}

/// A network consensus document, parsed (§5.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    /// The epoch this document is for.
    pub epoch: u64,
    /// The network parameters.
    pub params: Parameters,
    /// One entry per mix layer, layer 0 first.
    pub topology: Vec<Vec<MixDescriptor>>,
    /// Provider descriptors.
    pub providers: Vec<MixDescriptor>,
    /// 40 bytes (epoch u64be first) or empty (nonvoting authority).
    pub shared_random_commit: Vec<u8>,
    /// 32 bytes (zeros from the nonvoting authority), or empty with a commit.
    pub shared_random_value: Vec<u8>,
}

/// Why a descriptor was rejected (§5.4 "Descriptor"), or could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DescriptorError {
    /// The certificate is malformed or does not verify.
    #[error("descriptor certificate: {0}")]
    Cert(#[from] CertError),
    /// The payload is not a JSON object.
    #[error("descriptor JSON: {0}")]
    Json(String),
    /// A field has the wrong type or encoding.
    #[error("descriptor field {field}: {reason}")]
    Field {
        /// JSON field name.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `Version` is not `v0`.
    #[error("descriptor version {0:?}, expected \"v0\"")]
    Version(String),
    /// Not exactly one signature.
    #[error("descriptor has {0} signatures, expected exactly 1")]
    SignatureCount(usize),
    /// The descriptor's IdentityKey is not the expected key (or not a valid Ed25519 key).
    #[error("descriptor IdentityKey is not the expected identity")]
    Identity,
    /// Name empty or longer than 32 bytes.
    #[error("descriptor Name of {0} bytes (must be 1 to 32)")]
    Name(usize),
    /// No mix key for the epoch.
    #[error("descriptor has no MixKey for epoch {0}")]
    MissingMixKey(u64),
    /// A mix key outside [epoch, epoch + 3).
    #[error("descriptor MixKey for epoch {key_epoch} outside [{epoch}, {epoch}+3)")]
    MixKeyEpoch {
        /// The offending key's epoch.
        key_epoch: u64,
        /// The epoch checked for.
        epoch: u64,
    },
    /// No addresses at all.
    #[error("descriptor has no Addresses")]
    NoAddresses,
    /// An empty transport name.
    #[error("descriptor has an empty transport name")]
    EmptyTransport,
    /// A transport with an empty address list.
    #[error("descriptor transport {0:?} has no addresses")]
    EmptyAddressList(String),
    /// A non-IP transport on a mix.
    #[error("transport {0:?} is only allowed for providers")]
    TransportNotAllowed(String),
    /// A malformed address.
    #[error("descriptor address {address:?} ({transport}): {reason}")]
    Address {
        /// Transport name.
        transport: String,
        /// The address.
        address: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No `tcp4` address.
    #[error("descriptor has no tcp4 address")]
    NoTcp4,
    /// A mix (layer 0) publishing Kaetzchen.
    #[error("mix descriptor publishes Kaetzchen")]
    MixWithKaetzchen,
    /// A malformed Kaetzchen entry.
    #[error("Kaetzchen {capability:?}: {reason}")]
    Kaetzchen {
        /// The capability.
        capability: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Layer other than 0 or 255.
    #[error("descriptor Layer {0} (must be 0 or 255)")]
    Layer(u8),
    /// Serialising: a Kaetzchen parameter holds a non-finite float.
    #[error("descriptor Kaetzchen parameter is not representable in JSON")]
    Unrepresentable,
}

/// Why a document was rejected (§5.4 "Document"), or could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DocumentError {
    /// The certificate is malformed or does not verify with the authority key.
    #[error("document certificate: {0}")]
    Cert(#[from] CertError),
    /// The payload is not a JSON object.
    #[error("document JSON: {0}")]
    Json(String),
    /// A field has the wrong type or encoding.
    #[error("document field {field}: {reason}")]
    Field {
        /// JSON field name.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `Version` is not `document-v0`.
    #[error("document version {0:?}, expected \"document-v0\"")]
    Version(String),
    /// SharedRandomCommit of 40 bytes whose epoch prefix is not the document's.
    #[error("SharedRandomCommit is for epoch {0}")]
    SharedRandomCommitEpoch(u64),
    /// SharedRandomCommit neither 40 bytes nor (with a 32-byte value) empty.
    #[error("SharedRandomCommit of {0} bytes")]
    SharedRandomCommit(usize),
    /// SharedRandomValue neither 32 bytes nor (with a 40-byte commit) empty.
    #[error("SharedRandomValue of {0} bytes")]
    SharedRandomValue(usize),
    /// A descriptor failed (location like `Topology[1][0]` or `Providers[0]`).
    #[error("{location}: {source}")]
    Descriptor {
        /// Where in the document.
        location: String,
        /// The descriptor's failure.
        source: DescriptorError,
    },
    /// No mix layers.
    #[error("document Topology is empty")]
    EmptyTopology,
    /// More layers than a u8 layer number can name.
    #[error("document Topology has {0} layers")]
    TooManyLayers(usize),
    /// A layer without mixes.
    #[error("document Topology layer {0} is empty")]
    EmptyLayer(usize),
    /// No providers.
    #[error("document has no Providers")]
    NoProviders,
    /// A provider whose Layer is not 255.
    #[error("Providers[{index}] has Layer {layer}, expected 255")]
    ProviderLayer {
        /// Index in Providers.
        index: usize,
        /// Its layer.
        layer: u8,
    },
    /// The same identity key appears twice.
    #[error("{0}: identity key appears twice in the document")]
    DuplicateIdentity(String),
    /// The document is for another epoch than the one asked for (§5.1).
    #[error("document is for epoch {got}, asked for {want}")]
    WrongEpoch {
        /// The epoch asked for.
        want: u64,
        /// The document's epoch.
        got: u64,
    },
    /// Signing: a descriptor has no signed bytes to embed.
    #[error("{0}: descriptor has no signed bytes to embed")]
    UnsignedDescriptor(String),
    /// Serialising: a float is NaN or infinite.
    #[error("document field {0} is not a finite number")]
    NonFinite(&'static str),
}

fn desc_field(field: &'static str) -> impl Fn(FieldErr) -> DescriptorError {
    move |e| DescriptorError::Field {
        field,
        reason: e.as_str(),
    }
}

fn doc_field(field: &'static str) -> impl Fn(FieldErr) -> DocumentError {
    move |e| DocumentError::Field {
        field,
        reason: e.as_str(),
    }
}

// ------------------------------------------------------------- descriptors

impl MixDescriptor {
    /// Parses descriptor JSON (no signature or well-formedness checks).
    /// Returns the descriptor and its `Version` string.
    pub fn from_json(bytes: &[u8]) -> Result<(MixDescriptor, String), DescriptorError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| DescriptorError::Json(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| DescriptorError::Json("not an object".into()))?;
        let mut d = MixDescriptor {
            name: json::string(obj, "Name").map_err(desc_field("Name"))?,
            identity_key: json::key32(obj, "IdentityKey").map_err(desc_field("IdentityKey"))?,
            link_key: json::key32(obj, "LinkKey").map_err(desc_field("LinkKey"))?,
            layer: json::uint8(obj, "Layer").map_err(desc_field("Layer"))?,
            load_weight: json::uint8(obj, "LoadWeight").map_err(desc_field("LoadWeight"))?,
            ..Default::default()
        };
        if let Some(m) = json::object(obj, "MixKeys").map_err(desc_field("MixKeys"))? {
            for (k, v) in m {
                let e = json::parse_decimal(k).ok_or(DescriptorError::Field {
                    field: "MixKeys",
                    reason: "epoch is not a decimal integer",
                })?;
                let key = json::key32_value(v).map_err(desc_field("MixKeys"))?;
                d.mix_keys.insert(e, key);
            }
        }
        if let Some(m) = json::object(obj, "Addresses").map_err(desc_field("Addresses"))? {
            for (transport, list) in m {
                let list = match list {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or(DescriptorError::Field {
                            field: "Addresses",
                            reason: "address is not a string",
                        })?,
                    _ => {
                        return Err(DescriptorError::Field {
                            field: "Addresses",
                            reason: "not a list of strings",
                        })
                    }
                };
                d.addresses.insert(transport.clone(), list);
            }
        }
        if let Some(m) = json::object(obj, "Kaetzchen").map_err(desc_field("Kaetzchen"))? {
            for (capability, params) in m {
                let params = match params {
                    Value::Null => BTreeMap::new(),
                    Value::Object(p) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    _ => {
                        return Err(DescriptorError::Field {
                            field: "Kaetzchen",
                            reason: "parameters are not an object",
                        })
                    }
                };
                d.kaetzchen.insert(capability.clone(), params);
            }
        }
        let version = json::string(obj, "Version").map_err(desc_field("Version"))?;
        Ok((d, version))
    }

    /// The canonical descriptor JSON (as the Go node emits it), `Version` "v0".
    pub fn to_json(&self) -> Result<Vec<u8>, DescriptorError> {
        let mut out = Vec::with_capacity(512);
        let mut o = ObjectWriter::new(&mut out);
        {
            let b = o.key("Addresses");
            let mut a = ObjectWriter::new(b);
            for (transport, list) in &self.addresses {
                let b = a.key(transport);
                b.push(b'[');
                for (i, addr) in list.iter().enumerate() {
                    if i > 0 {
                        b.push(b',');
                    }
                    json::write_str(b, addr);
                }
                b.push(b']');
            }
            a.finish();
        }
        json::write_str(o.key("IdentityKey"), &json::b64_encode(&self.identity_key));
        if !self.kaetzchen.is_empty() {
            let b = o.key("Kaetzchen");
            let mut k = ObjectWriter::new(b);
            for (capability, params) in &self.kaetzchen {
                let b = k.key(capability);
                let mut p = ObjectWriter::new(b);
                for (name, value) in params {
                    json::write_value(p.key(name), value)
                        .ok_or(DescriptorError::Unrepresentable)?;
                }
                p.finish();
            }
            k.finish();
        }
        json::write_uint(o.key("Layer"), u64::from(self.layer));
        json::write_str(o.key("LinkKey"), &json::b64_encode(&self.link_key));
        json::write_uint(o.key("LoadWeight"), u64::from(self.load_weight));
        {
            let b = o.key("MixKeys");
            let mut m = ObjectWriter::new(b);
            // ugorji's Canonical mode sorts integer keys numerically.
            for (epoch, key) in &self.mix_keys {
                json::write_str(m.key(&epoch.to_string()), &json::b64_encode(key));
            }
            m.finish();
        }
        json::write_str(o.key("Name"), &self.name);
        json::write_str(o.key("Version"), DESCRIPTOR_VERSION);
        o.finish();
        Ok(out)
    }

    /// The Kaetzchen endpoint (recipient) of a capability, e.g. `keyserver`.
    pub fn kaetzchen_endpoint(&self, capability: &str) -> Option<&str> {
        self.kaetzchen.get(capability)?.get("endpoint")?.as_str()
    }

    /// Checks well-formedness for `epoch` (§5.4).
    pub fn validate(&self, epoch: u64) -> Result<(), DescriptorError> {
        validate::descriptor_well_formed(self, epoch)
    }

    /// Verifies a signed descriptor by its own IdentityKey at `now_unix`,
    /// requires exactly one signature and `Version` "v0", and checks it is
    /// well formed for `epoch` (authority `VerifyAndParseDescriptor`).
    /// The result keeps the signed bytes in [`MixDescriptor::signed`].
    pub fn parse_signed(
        signed: &[u8],
        epoch: u64,
        now_unix: u64,
    ) -> Result<MixDescriptor, DescriptorError> {
        let cert = Certificate::from_bytes(signed)?;
        let (mut d, version) = MixDescriptor::from_json(&cert.certified)?;
        let key =
            VerifyingKey::from_bytes(&d.identity_key).map_err(|_| DescriptorError::Identity)?;
        cert.verify(&key, now_unix)?;
        if cert.signatures.len() != 1 {
            return Err(DescriptorError::SignatureCount(cert.signatures.len()));
        }
        if version != DESCRIPTOR_VERSION {
            return Err(DescriptorError::Version(version));
        }
        d.validate(epoch)?;
        d.signed = signed.to_vec();
        Ok(d)
    }

    /// [`MixDescriptor::parse_signed`], and the IdentityKey must be `identity`
    /// (the authority's check against the uploading session's key).
    pub fn parse_signed_by(
        signed: &[u8],
        identity: &[u8; 32],
        epoch: u64,
        now_unix: u64,
    ) -> Result<MixDescriptor, DescriptorError> {
        let d = MixDescriptor::parse_signed(signed, epoch, now_unix)?;
        if &d.identity_key != identity {
            return Err(DescriptorError::Identity);
        }
        Ok(d)
    }
}

/// Signs `desc` with the node's identity key: the signed descriptor bytes.
/// `desc.identity_key` must be `identity`'s public key. Well-formedness is
/// not checked here (see [`MixDescriptor::validate`]).
pub fn sign_descriptor(
    desc: &MixDescriptor,
    identity: &SigningKey,
    expiration: i64,
) -> Result<Vec<u8>, DescriptorError> {
    if identity.verifying_key().to_bytes() != desc.identity_key {
        return Err(DescriptorError::Identity);
    }
    let payload = desc.to_json()?;
    Ok(super::cert::sign(identity, &payload, expiration))
}

// --------------------------------------------------------------- documents

/// Document JSON as transmitted: fields parsed, descriptors still signed bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawDocument {
    /// The epoch this document is for.
    pub epoch: u64,
    /// The network parameters.
    pub params: Parameters,
    /// Signed descriptors per layer.
    pub topology: Vec<Vec<Vec<u8>>>,
    /// Signed provider descriptors.
    pub providers: Vec<Vec<u8>>,
    /// 40 bytes (epoch u64be first) or empty (nonvoting authority).
    pub shared_random_commit: Vec<u8>,
    /// 32 bytes (zeros from the nonvoting authority), or empty with a commit.
    pub shared_random_value: Vec<u8>,
    /// `document-v0` for a valid document.
    pub version: String,
}

impl RawDocument {
    /// Parses document JSON (lenient: integers as strings or numbers, null
    /// as empty, unknown fields ignored). No validation.
    pub fn from_json(bytes: &[u8]) -> Result<RawDocument, DocumentError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| DocumentError::Json(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| DocumentError::Json("not an object".into()))?;
        let mut topology = Vec::new();
        for layer in json::array(obj, "Topology").map_err(doc_field("Topology"))? {
            topology.push(match layer {
                Value::Null => Vec::new(),
                Value::Array(a) => blobs(a, "Topology")?,
                _ => {
                    return Err(DocumentError::Field {
                        field: "Topology",
                        reason: "layer is not a list",
                    })
                }
            });
        }
        let providers = blobs(
            json::array(obj, "Providers").map_err(doc_field("Providers"))?,
            "Providers",
        )?;
        Ok(RawDocument {
            epoch: json::uint(obj, "Epoch").map_err(doc_field("Epoch"))?,
            params: Parameters::from_json(obj)?,
            topology,
            providers,
            shared_random_commit: json::bytes(obj, "SharedRandomCommit")
                .map_err(doc_field("SharedRandomCommit"))?,
            shared_random_value: json::bytes(obj, "SharedRandomValue")
                .map_err(doc_field("SharedRandomValue"))?,
            version: json::string(obj, "Version").map_err(doc_field("Version"))?,
        })
    }

    /// The canonical document JSON (keys sorted, integers as strings).
    pub fn to_json(&self) -> Result<Vec<u8>, DocumentError> {
        let size: usize = self
            .providers
            .iter()
            .map(|p| p.len() * 4 / 3 + 4)
            .sum::<usize>()
            + self
                .topology
                .iter()
                .flatten()
                .map(|p| p.len() * 4 / 3 + 4)
                .sum::<usize>();
        let mut out = Vec::with_capacity(size + 600);
        let mut o = ObjectWriter::new(&mut out);
        let float =
            |f: f64, name: &'static str| json::go_float(f).ok_or(DocumentError::NonFinite(name));
        json::write_uint(o.key("Epoch"), self.epoch);
        o.key("LambdaD")
            .extend_from_slice(float(self.params.lambda_d, "LambdaD")?.as_bytes());
        json::write_uint(o.key("LambdaDMaxDelay"), self.params.lambda_d_max_delay);
        o.key("LambdaL")
            .extend_from_slice(float(self.params.lambda_l, "LambdaL")?.as_bytes());
        json::write_uint(o.key("LambdaLMaxDelay"), self.params.lambda_l_max_delay);
        o.key("LambdaM")
            .extend_from_slice(float(self.params.lambda_m, "LambdaM")?.as_bytes());
        json::write_uint(o.key("LambdaMMaxDelay"), self.params.lambda_m_max_delay);
        o.key("LambdaP")
            .extend_from_slice(float(self.params.lambda_p, "LambdaP")?.as_bytes());
        json::write_uint(o.key("LambdaPMaxDelay"), self.params.lambda_p_max_delay);
        o.key("Mu")
            .extend_from_slice(float(self.params.mu, "Mu")?.as_bytes());
        json::write_uint(o.key("MuMaxDelay"), self.params.mu_max_delay);
        write_blob_list(o.key("Providers"), &self.providers);
        json::write_uint(o.key("SendRatePerMinute"), self.params.send_rate_per_minute);
        json::write_bytes_or_null(o.key("SharedRandomCommit"), &self.shared_random_commit);
        json::write_bytes_or_null(o.key("SharedRandomValue"), &self.shared_random_value);
        {
            let b = o.key("Topology");
            b.push(b'[');
            for (i, layer) in self.topology.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                write_blob_list(b, layer);
            }
            b.push(b']');
        }
        json::write_str(o.key("Version"), &self.version);
        o.finish();
        Ok(out)
    }
}

fn write_blob_list(out: &mut Vec<u8>, list: &[Vec<u8>]) {
    out.push(b'[');
    for (i, blob) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, &json::b64_encode(blob));
    }
    out.push(b']');
}

fn blobs(list: &[Value], field: &'static str) -> Result<Vec<Vec<u8>>, DocumentError> {
    list.iter()
        .map(|v| json::bytes_value(v).map_err(doc_field(field)))
        .collect()
}

/// §5.4 step 3.
fn check_shared_random(epoch: u64, commit: &[u8], value: &[u8]) -> Result<(), DocumentError> {
    if commit.len() == SHARED_RANDOM_COMMIT_LENGTH {
        let mut e = [0u8; 8];
        e.copy_from_slice(&commit[..8]);
        let e = u64::from_be_bytes(e);
        if e != epoch {
            return Err(DocumentError::SharedRandomCommitEpoch(e));
        }
    }
    let value_ok = value.len() == SHARED_RANDOM_VALUE_LENGTH
        || (value.is_empty() && commit.len() == SHARED_RANDOM_COMMIT_LENGTH);
    if !value_ok {
        return Err(DocumentError::SharedRandomValue(value.len()));
    }
    let commit_ok = commit.len() == SHARED_RANDOM_COMMIT_LENGTH
        || (commit.is_empty() && value.len() == SHARED_RANDOM_VALUE_LENGTH);
    if !commit_ok {
        return Err(DocumentError::SharedRandomCommit(commit.len()));
    }
    Ok(())
}

impl Document {
    /// Verifies a signed document with the authority key at `now_unix`,
    /// parses it and applies every §5.4 rule (each descriptor's
    /// self-signature too). Mix layers are set to their topology index.
    /// The caller checks that `epoch` is the one it asked for (§5.1).
    pub fn verify_and_parse(
        bytes: &[u8],
        authority: &VerifyingKey,
        now_unix: u64,
    ) -> Result<Document, DocumentError> {
        let cert = Certificate::from_bytes(bytes)?;
        cert.verify(authority, now_unix)?;
        let raw = RawDocument::from_json(&cert.certified)?;
        Document::from_raw(&raw, now_unix)
    }

    /// [`Document::verify_and_parse`], and the document must be for `epoch`
    /// (what a client does with a fetched consensus, §5.1).
    pub fn verify_and_parse_for_epoch(
        bytes: &[u8],
        authority: &VerifyingKey,
        epoch: u64,
        now_unix: u64,
    ) -> Result<Document, DocumentError> {
        let doc = Document::verify_and_parse(bytes, authority, now_unix)?;
        if doc.epoch != epoch {
            return Err(DocumentError::WrongEpoch {
                want: epoch,
                got: doc.epoch,
            });
        }
        Ok(doc)
    }

    /// Validates a parsed [`RawDocument`] (§5.4 steps 2-6) at `now_unix`.
    pub fn from_raw(raw: &RawDocument, now_unix: u64) -> Result<Document, DocumentError> {
        if raw.version != DOCUMENT_VERSION {
            return Err(DocumentError::Version(raw.version.clone()));
        }
        check_shared_random(
            raw.epoch,
            &raw.shared_random_commit,
            &raw.shared_random_value,
        )?;
        if raw.topology.len() > usize::from(u8::MAX) {
            return Err(DocumentError::TooManyLayers(raw.topology.len()));
        }
        let parse = |blob: &[u8], location: String| {
            MixDescriptor::parse_signed(blob, raw.epoch, now_unix)
                .map_err(|source| DocumentError::Descriptor { location, source })
        };
        let mut topology = Vec::with_capacity(raw.topology.len());
        for (l, layer) in raw.topology.iter().enumerate() {
            let mut nodes = Vec::with_capacity(layer.len());
            for (i, blob) in layer.iter().enumerate() {
                let mut d = parse(blob, format!("Topology[{l}][{i}]"))?;
                d.layer = l as u8;
                nodes.push(d);
            }
            topology.push(nodes);
        }
        let mut providers = Vec::with_capacity(raw.providers.len());
        for (i, blob) in raw.providers.iter().enumerate() {
            providers.push(parse(blob, format!("Providers[{i}]"))?);
        }
        let doc = Document {
            epoch: raw.epoch,
            params: raw.params,
            topology,
            providers,
            shared_random_commit: raw.shared_random_commit.clone(),
            shared_random_value: raw.shared_random_value.clone(),
        };
        doc.check_structure()?;
        Ok(doc)
    }

    /// §5.4 step 5: topology and providers non-empty, providers at layer
    /// 255, no identity key twice.
    fn check_structure(&self) -> Result<(), DocumentError> {
        if self.topology.is_empty() {
            return Err(DocumentError::EmptyTopology);
        }
        if let Some(l) = self.topology.iter().position(|l| l.is_empty()) {
            return Err(DocumentError::EmptyLayer(l));
        }
        if self.providers.is_empty() {
            return Err(DocumentError::NoProviders);
        }
        if let Some((index, p)) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| p.layer != LAYER_PROVIDER)
        {
            return Err(DocumentError::ProviderLayer {
                index,
                layer: p.layer,
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for (l, layer) in self.topology.iter().enumerate() {
            for (i, d) in layer.iter().enumerate() {
                if !seen.insert(d.identity_key) {
                    return Err(DocumentError::DuplicateIdentity(format!(
                        "Topology[{l}][{i}]"
                    )));
                }
            }
        }
        for (i, d) in self.providers.iter().enumerate() {
            if !seen.insert(d.identity_key) {
                return Err(DocumentError::DuplicateIdentity(format!("Providers[{i}]")));
            }
        }
        Ok(())
    }

    /// The transmitted form: the descriptors' signed bytes embedded.
    pub fn to_raw(&self) -> Result<RawDocument, DocumentError> {
        let signed = |d: &MixDescriptor, location: String| {
            if d.signed.is_empty() {
                Err(DocumentError::UnsignedDescriptor(location))
            } else {
                Ok(d.signed.clone())
            }
        };
        let mut topology = Vec::with_capacity(self.topology.len());
        for (l, layer) in self.topology.iter().enumerate() {
            topology.push(
                layer
                    .iter()
                    .enumerate()
                    .map(|(i, d)| signed(d, format!("Topology[{l}][{i}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let providers = self
            .providers
            .iter()
            .enumerate()
            .map(|(i, d)| signed(d, format!("Providers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RawDocument {
            epoch: self.epoch,
            params: self.params,
            topology,
            providers,
            shared_random_commit: self.shared_random_commit.clone(),
            shared_random_value: self.shared_random_value.clone(),
            version: DOCUMENT_VERSION.to_owned(),
        })
    }

    /// The canonical document JSON (as the Go authority emits it).
    pub fn to_json(&self) -> Result<Vec<u8>, DocumentError> {
        self.to_raw()?.to_json()
    }

    /// Every node's descriptor: mixes layer by layer, then providers.
    pub fn nodes(&self) -> impl Iterator<Item = &MixDescriptor> {
        self.topology.iter().flatten().chain(self.providers.iter())
    }

    /// The descriptor with this identity key (Sphinx node id).
    pub fn node_by_identity(&self, identity: &[u8; 32]) -> Option<&MixDescriptor> {
        self.nodes().find(|d| &d.identity_key == identity)
    }

    /// The provider with this name (the domain of user addresses).
    pub fn provider_by_name(&self, name: &str) -> Option<&MixDescriptor> {
        self.providers.iter().find(|d| d.name == name)
    }
}

/// Builds and signs a document with the authority key: the signed document
/// bytes. Every descriptor must carry its signed bytes (from
/// [`MixDescriptor::parse_signed`] or set after [`sign_descriptor`]); the
/// document's structure (§5.4 steps 3 and 5) is checked first.
pub fn sign_document(
    doc: &Document,
    authority: &SigningKey,
    expiration: i64,
) -> Result<Vec<u8>, DocumentError> {
    check_shared_random(
        doc.epoch,
        &doc.shared_random_commit,
        &doc.shared_random_value,
    )?;
    doc.check_structure()?;
    let payload = doc.to_json()?;
    Ok(super::cert::sign(authority, &payload, expiration))
}
