//! Descriptor well-formedness (§5.4, authority `internal/s11n`).

use std::net::IpAddr;

use super::document::{DescriptorError, MixDescriptor, LAYER_PROVIDER};
use crate::geometry::{MIX_KEYS_PER_DESCRIPTOR, RECIPIENT_ID_LENGTH};

/// Longest node name.
pub const MAX_NAME_LENGTH: usize = 32;
/// Transport: TCP over IPv4 (required for every node).
pub const TRANSPORT_TCP4: &str = "tcp4";
/// Transport: TCP over IPv6.
pub const TRANSPORT_TCP6: &str = "tcp6";
/// Transport: TCP to a host name (providers only).
pub const TRANSPORT_TCP: &str = "tcp";

/// Checks that `d` is well formed for `epoch` (§5.4 "Descriptor").
pub fn descriptor_well_formed(d: &MixDescriptor, epoch: u64) -> Result<(), DescriptorError> {
    if d.name.is_empty() || d.name.len() > MAX_NAME_LENGTH {
        return Err(DescriptorError::Name(d.name.len()));
    }
    // IdentityKey and LinkKey presence is enforced when parsing (fixed-size fields).
    if !d.mix_keys.contains_key(&epoch) {
        return Err(DescriptorError::MissingMixKey(epoch));
    }
    let last = epoch.saturating_add(MIX_KEYS_PER_DESCRIPTOR as u64);
    if let Some(&e) = d.mix_keys.keys().find(|&&e| e < epoch || e >= last) {
        return Err(DescriptorError::MixKeyEpoch {
            key_epoch: e,
            epoch,
        });
    }
    if d.layer != 0 && d.layer != LAYER_PROVIDER {
        return Err(DescriptorError::Layer(d.layer));
    }
    if d.addresses.is_empty() {
        return Err(DescriptorError::NoAddresses);
    }
    for (transport, list) in &d.addresses {
        if transport.is_empty() {
            return Err(DescriptorError::EmptyTransport);
        }
        if list.is_empty() {
            return Err(DescriptorError::EmptyAddressList(transport.clone()));
        }
        let ip_version = match transport.as_str() {
            TRANSPORT_TCP4 => Some(4),
            TRANSPORT_TCP6 => Some(6),
            _ => {
                if d.layer != LAYER_PROVIDER {
                    return Err(DescriptorError::TransportNotAllowed(transport.clone()));
                }
                if transport != TRANSPORT_TCP {
                    // Transports without validation rules (e.g. onion).
                    continue;
                }
                None
            }
        };
        for addr in list {
            check_address(addr, ip_version).map_err(|reason| DescriptorError::Address {
                transport: transport.clone(),
                address: addr.clone(),
                reason,
            })?;
        }
    }
    if d.addresses.get(TRANSPORT_TCP4).is_none_or(|l| l.is_empty()) {
        return Err(DescriptorError::NoTcp4);
    }
    if d.layer == 0 {
        if !d.kaetzchen.is_empty() {
            return Err(DescriptorError::MixWithKaetzchen);
        }
    } else {
        for (capability, params) in &d.kaetzchen {
            if capability.is_empty() {
                return Err(DescriptorError::Kaetzchen {
                    capability: capability.clone(),
                    reason: "empty capability name",
                });
            }
            let endpoint = params.get("endpoint").and_then(|v| v.as_str());
            match endpoint {
                None => {
                    return Err(DescriptorError::Kaetzchen {
                        capability: capability.clone(),
                        reason: "no string endpoint",
                    })
                }
                Some(ep) if ep.is_empty() || ep.len() > RECIPIENT_ID_LENGTH => {
                    return Err(DescriptorError::Kaetzchen {
                        capability: capability.clone(),
                        reason: "endpoint must be 1 to 64 bytes",
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Checks one `host:port` address. `ip_version` is 4 or 6 for the IP
/// transports; `None` for `tcp`, whose host must be a valid IDNA name.
fn check_address(addr: &str, ip_version: Option<u8>) -> Result<(), &'static str> {
    let (host, port) = split_host_port(addr)?;
    if host.is_empty() {
        return Err("empty host");
    }
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid port");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err("port out of range"),
        Ok(_) => {}
    }
    match ip_version {
        Some(want) => {
            let ip: IpAddr = host.parse().map_err(|_| "host is not an IP literal")?;
            let got = match ip {
                IpAddr::V4(_) => 4,
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => 4,
                IpAddr::V6(_) => 6,
            };
            if got != want {
                return Err("wrong IP version for the transport");
            }
            Ok(())
        }
        None => check_idna_host(host),
    }
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`.
fn split_host_port(addr: &str) -> Result<(&str, &str), &'static str> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']'")?;
        let port = after.strip_prefix(':').ok_or("missing port")?;
        if host.contains('[') || host.contains(']') || port.contains('[') || port.contains(']') {
            return Err("unexpected bracket");
        }
        return Ok((host, port));
    }
    let (host, port) = addr.rsplit_once(':').ok_or("missing port")?;
    if host.contains(':') {
        return Err("too many colons");
    }
    if host.contains('[') || host.contains(']') || port.contains('[') || port.contains(']') {
        return Err("unexpected bracket");
    }
    Ok((host, port))
}

/// An approximation of Go's `idna.Lookup.ToASCII` success for a host name:
/// labels of letters, digits and hyphens (STD3 rules, any case, non-ASCII
/// letters allowed as IDNA would map them), no hyphen at either end of a
/// label, and no `--` in positions 3-4 except for `xn--` labels.
fn check_idna_host(host: &str) -> Result<(), &'static str> {
    for label in host.split('.') {
        if label.starts_with('-') || label.ends_with('-') {
            return Err("host label starts or ends with '-'");
        }
        if !label.chars().all(|c| c == '-' || c.is_alphanumeric()) {
            return Err("host is not a valid IDNA name");
        }
        let lower = label.to_ascii_lowercase();
        if lower.len() >= 4 && &lower.as_bytes()[2..4] == b"--" && !lower.starts_with("xn--") {
            return Err("host label has '--' in positions 3 and 4");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("1.2.3.4:80"), Ok(("1.2.3.4", "80")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("1.2.3.4").is_err());
        assert!(split_host_port("[::1]80").is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_address("127.0.0.1:30001", Some(4)).is_ok());
        assert!(check_address("127.0.0.1:0", Some(4)).is_err());
        assert!(check_address("127.0.0.1:65536", Some(4)).is_err());
        assert!(check_address("127.0.0.1:+80", Some(4)).is_err());
        assert!(check_address("[::1]:80", Some(4)).is_err());
        assert!(check_address("[::1]:80", Some(6)).is_ok());
        assert!(check_address("[::ffff:1.2.3.4]:80", Some(4)).is_ok());
        assert!(check_address("example.org:80", Some(4)).is_err());
        assert!(check_address("example.org:80", None).is_ok());
        assert!(check_address("Bücher.example:80", None).is_ok());
        assert!(check_address("xn--bcher-kva.example:80", None).is_ok());
        assert!(check_address("bad_host:80", None).is_err());
        assert!(check_address("-bad.example:80", None).is_err());
        assert!(check_address("ab--c.example:80", None).is_err());
        assert!(check_address(":80", None).is_err());
    }
}
