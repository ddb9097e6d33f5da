//! Parsing `smbstatus -p --json`: the SMB sessions, keyed by the smbd process that serves
//! each client connection.
//!
//! JSON is fine here: its cost grows with the number of sessions (clients), not open files,
//! and only the JSON form carries the session id.

use std::collections::HashMap;

use serde_json::Value;

/// Who is on the other end of an smbd process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The SMB session id.
    pub session_id: u64,
    /// `ip:port` (`[v6]:port`) of the client's connection.
    pub client_ip: String,
    /// The client's machine name as Samba knows it (SMB2 clients send none, so this is
    /// usually their address).
    pub client_name: Option<String>,
}

/// Sessions by smbd pid. A connection may carry several sessions; we report the one with the
/// lowest id (opens are not recorded per session in smbstatus).
pub fn parse(json: &[u8]) -> Result<HashMap<u32, Session>, String> {
    let root: Value = serde_json::from_slice(json)
        .map_err(|e| format!("smbstatus -p --json is not JSON: {e}"))?;
    let mut out: HashMap<u32, Session> = HashMap::new();
    let Some(sessions) = root.get("sessions") else {
        // No sessions: smbstatus leaves the key out.
        return Ok(out);
    };
    let sessions = sessions
        .as_object()
        .ok_or("smbstatus -p --json: `sessions` is not an object")?;
    for (key, s) in sessions {
        let Some(pid) = s
            .pointer("/server_id/pid")
            .and_then(number)
            .and_then(|p| u32::try_from(p).ok())
        else {
            return Err(format!(
                "smbstatus -p --json: session {key:?} has no server_id.pid"
            ));
        };
        let session_id = s
            .get("session_id")
            .and_then(number)
            .or_else(|| key.parse().ok())
            .ok_or_else(|| format!("smbstatus -p --json: session {key:?} has no session_id"))?;
        let machine = s
            .get("remote_machine")
            .and_then(Value::as_str)
            .unwrap_or("");
        let client_ip = s
            .get("hostname")
            .and_then(Value::as_str)
            .and_then(client_address)
            .unwrap_or_else(|| machine.to_owned());
        let session = Session {
            session_id,
            client_ip,
            client_name: (!machine.is_empty()).then(|| machine.to_owned()),
        };
        match out.get(&pid) {
            Some(existing) if existing.session_id <= session_id => {}
            _ => {
                out.insert(pid, session);
            }
        }
    }
    Ok(out)
}

/// smbstatus prints numbers as strings (`"10178"`) and some as numbers.
fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `ipv4:127.0.0.1:40968` → `127.0.0.1:40968`; `ipv6:fd00::1:445` → `[fd00::1]:445`.
fn client_address(hostname: &str) -> Option<String> {
    let (family, rest) = hostname.split_once(':')?;
    let (addr, port) = rest.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    match family {
        "ipv4" => Some(format!("{addr}:{port}")),
        "ipv6" => Some(format!("[{addr}]:{port}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_pids_to_sessions() {
        let json = br#"{"timestamp": "2026-11-21T05:50:13.350600+0000", "version": "4.17.12-Debian",
          "smb_conf": "/etc/samba/smb.conf", "sessions": {
           "3705453239": {"session_id": "3705453239", "server_id": {"pid": "10881", "task_id": "0", "vnn": "4294967295", "unique_id": "1"},
             "uid": 1001, "gid": 1001, "username": "u", "groupname": "u", "remote_machine": "127.0.0.1",
             "hostname": "ipv4:127.0.0.1:35702", "session_dialect": "SMB3_11"},
           "17": {"session_id": "17", "server_id": {"pid": "10881"}, "remote_machine": "127.0.0.1", "hostname": "ipv4:127.0.0.1:35702"},
           "99": {"server_id": {"pid": 42}, "remote_machine": "", "hostname": "ipv6:fd00::1:445"},
           "5": {"session_id": "5", "server_id": {"pid": "43"}, "remote_machine": "WS01", "hostname": "weird"}}}"#;
        let m = parse(json).unwrap();
        assert_eq!(m[&10881].session_id, 17);
        assert_eq!(m[&10881].client_ip, "127.0.0.1:35702");
        assert_eq!(m[&42].session_id, 99);
        assert_eq!(m[&42].client_ip, "[fd00::1]:445");
        assert_eq!(m[&42].client_name, None);
        assert_eq!(m[&43].client_ip, "WS01");
        assert_eq!(m[&43].client_name.as_deref(), Some("WS01"));
    }

    #[test]
    fn refuses_malformed_output_clearly() {
        assert!(parse(b"{}").unwrap().is_empty());
        assert!(parse(b"not json").unwrap_err().contains("not JSON"));
        assert!(
            parse(br#"{"sessions": []}"#)
                .unwrap_err()
                .contains("not an object")
        );
        assert!(
            parse(br#"{"sessions": {"1": {}}}"#)
                .unwrap_err()
                .contains("server_id.pid")
        );
        assert!(
            parse(br#"{"sessions": {"x": {"server_id": {"pid": "1"}}}}"#)
                .unwrap_err()
                .contains("session_id")
        );
    }
}
