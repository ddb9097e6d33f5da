//! The XML codec: List Handles bodies and error bodies.
//!
//! The encoder writes bytes directly (pages hold up to 5,000 handles and are the hot path of
//! the service). The decoder accepts what any real service version sends: any element order,
//! whitespace between elements, with or without the BOM, unknown elements ignored.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::error::{ErrorCode, StorageError, strip_message_trailer};
use super::handle::{AccessRights, Handle, HandleId};
use super::time::{parse_rfc1123, write_rfc1123};
use super::version::ServiceVersion;
use super::{HandleList, Marker};

/// The UTF-8 BOM and XML declaration every body starts with.
pub(crate) const BOM_DECL: &[u8] = b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>";

/// What is kept as-is in an encoded path: RFC 3986 unreserved characters and `/`.
const PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A body that is not what the protocol says, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} body: {reason}")]
pub struct XmlError {
    /// Which body (`List Handles`, `Error`).
    pub what: &'static str,
    /// What was wrong, naming the element and value.
    pub reason: String,
}

/// Appends `s` with `&`, `<`, `>` and `"` escaped, CR as `&#13;` (parsers would turn a raw
/// CR into LF), and characters XML 1.0 cannot carry at all (other controls, U+FFFE, U+FFFF)
/// replaced by U+FFFD, so one odd value never makes a whole body unreadable.
pub(crate) fn escape_text(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let rep: &[u8] = match c {
            '&' => b"&amp;",
            '<' => b"&lt;",
            '>' => b"&gt;",
            '"' => b"&quot;",
            '\r' => b"&#13;",
            '\t' | '\n' => continue,
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => "\u{FFFD}".as_bytes(),
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + c.len_utf8();
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether `s` holds a character XML 1.0 cannot carry (or that parsers rewrite, like CR).
fn needs_encoding(s: &str) -> bool {
    s.chars()
        .any(|c| (c < ' ') || c == '\u{FFFE}' || c == '\u{FFFF}')
}

/// Encodes a List Handles response body as the service does at `version`.
///
/// `marker` and `max_results` are the request's, echoed when it sent them.
pub fn encode_list(
    out: &mut Vec<u8>,
    version: ServiceVersion,
    marker: Option<&str>,
    max_results: Option<u32>,
    handles: &[Handle],
    next_marker: Option<&Marker>,
) {
    out.extend_from_slice(BOM_DECL);
    out.extend_from_slice(b"<EnumerationResults>");
    if let Some(m) = marker {
        out.extend_from_slice(b"<Marker>");
        escape_text(out, m);
        out.extend_from_slice(b"</Marker>");
    }
    if let Some(n) = max_results {
        out.extend_from_slice(b"<MaxResults>");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"</MaxResults>");
    }
    if handles.is_empty() {
        out.extend_from_slice(b"<Entries />");
    } else {
        out.extend_from_slice(b"<Entries>");
        for h in handles {
            encode_handle(out, version, h);
        }
        out.extend_from_slice(b"</Entries>");
    }
    match next_marker {
        Some(m) if !m.as_str().is_empty() => {
            out.extend_from_slice(b"<NextMarker>");
            escape_text(out, m.as_str());
            out.extend_from_slice(b"</NextMarker>");
        }
        _ => out.extend_from_slice(b"<NextMarker />"),
    }
    out.extend_from_slice(b"</EnumerationResults>");
}

/// One `<Handle>` in the 2024 element order, fields gated by `version`.
pub fn encode_handle(out: &mut Vec<u8>, version: ServiceVersion, h: &Handle) {
    let mut num = itoa::Buffer::new();
    let mut field = |out: &mut Vec<u8>, name: &[u8], value: u64| {
        out.push(b'<');
        out.extend_from_slice(name);
        out.push(b'>');
        out.extend_from_slice(num.format(value).as_bytes());
        out.extend_from_slice(b"</");
        out.extend_from_slice(name);
        out.push(b'>');
    };
    out.extend_from_slice(b"<Handle>");
    field(out, b"HandleId", h.handle_id.0);
    encode_path(out, version, &h.path);
    field(out, b"FileId", h.file_id);
    field(out, b"ParentId", h.parent_id);
    field(out, b"SessionId", h.session_id);
    if version.has_access_rights()
        && let Some(rights) = h.access_rights
    {
        if rights.is_empty() {
            out.extend_from_slice(b"<AccessRightList />");
        } else {
            out.extend_from_slice(b"<AccessRightList>");
            for name in rights.names() {
                out.extend_from_slice(b"<AccessRight>");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"</AccessRight>");
            }
            out.extend_from_slice(b"</AccessRightList>");
        }
    }
    out.extend_from_slice(b"<ClientIp>");
    escape_text(out, &h.client_ip);
    out.extend_from_slice(b"</ClientIp>");
    if version.has_client_name()
        && let Some(name) = &h.client_name
    {
        out.extend_from_slice(b"<ClientName>");
        escape_text(out, name);
        out.extend_from_slice(b"</ClientName>");
    }
    out.extend_from_slice(b"<OpenTime>");
    write_rfc1123(out, h.open_time);
    out.extend_from_slice(b"</OpenTime>");
    if let Some(t) = h.last_reconnect_time {
        out.extend_from_slice(b"<LastReconnectTime>");
        write_rfc1123(out, t);
        out.extend_from_slice(b"</LastReconnectTime>");
    }
    out.extend_from_slice(b"</Handle>");
}

fn encode_path(out: &mut Vec<u8>, version: ServiceVersion, path: &str) {
    if path.is_empty() {
        out.extend_from_slice(b"<Path />");
    } else if needs_encoding(path) {
        // Before 2021-12-02 there is no attribute to say so; the percent-encoded form is
        // still the only one valid XML can carry.
        if version.has_encoded_paths() {
            out.extend_from_slice(b"<Path Encoded=\"true\">");
        } else {
            out.extend_from_slice(b"<Path>");
        }
        out.extend(utf8_percent_encode(path, PATH_KEEP).flat_map(str::bytes));
        out.extend_from_slice(b"</Path>");
    } else {
        out.extend_from_slice(b"<Path>");
        escape_text(out, path);
        out.extend_from_slice(b"</Path>");
    }
}

fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

fn list_err(reason: impl Into<String>) -> XmlError {
    XmlError {
        what: "List Handles",
        reason: reason.into(),
    }
}

/// Decodes a List Handles response body.
pub fn decode_list(body: &[u8]) -> Result<HandleList, XmlError> {
    let mut reader = Reader::from_reader(strip_bom(body));
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut list = HandleList::default();
    let mut saw_root = false;
    let mut stack: Vec<Vec<u8>> = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| list_err(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                let name = e.name().0.to_vec();
                match (stack.len(), name.as_slice()) {
                    (0, b"EnumerationResults") => saw_root = true,
                    (0, other) => {
                        return Err(list_err(format!(
                            "root element is <{}>, expected <EnumerationResults>",
                            String::from_utf8_lossy(other)
                        )));
                    }
                    (2, b"Handle") if stack[1] == b"Entries" => {
                        let index = list.handles.len();
                        list.handles.push(decode_handle(&mut reader, index)?);
                        continue;
                    }
                    (1, b"Marker") => {
                        list.marker = Some(read_text(&mut reader, &e)?.trim().to_owned())
                    }
                    (1, b"MaxResults") => {
                        let t = read_text(&mut reader, &e)?.trim().to_owned();
                        list.max_results =
                            Some(t.parse().map_err(|_| {
                                list_err(format!("MaxResults {t:?} is not a number"))
                            })?);
                    }
                    (1, b"NextMarker") => {
                        let t = read_text(&mut reader, &e)?.trim().to_owned();
                        list.next_marker = (!t.is_empty()).then(|| Marker::new(t));
                    }
                    _ => {
                        stack.push(name);
                        continue;
                    }
                }
                if stack.is_empty() {
                    stack.push(b"EnumerationResults".to_vec());
                }
            }
            Event::Empty(e) if stack.is_empty() && e.name().0 == b"EnumerationResults" => {
                saw_root = true;
            }
            Event::End(_) => {
                stack.pop();
            }
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(list_err(format!(
                        "body ends inside <{}>",
                        String::from_utf8_lossy(open)
                    )));
                }
                break;
            }
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(list_err("no <EnumerationResults> element"));
    }
    Ok(list)
}

/// Reads the text content of the element `start` opened, through its end tag.
fn read_text(reader: &mut Reader<&[u8]>, start: &BytesStart<'_>) -> Result<String, XmlError> {
    let text = reader
        .read_text(start.name())
        .map_err(|e| list_err(e.to_string()))?;
    let text = quick_xml::escape::unescape(&text).map_err(|e| list_err(e.to_string()))?;
    Ok(text.into_owned())
}

fn decode_handle(reader: &mut Reader<&[u8]>, index: usize) -> Result<Handle, XmlError> {
    let at = |reason: String| list_err(format!("Handle #{}: {reason}", index + 1));
    let mut id = None;
    let mut path = None;
    let (mut file_id, mut parent_id, mut session_id) = (None, 0, None);
    let (mut client_ip, mut client_name, mut open_time, mut reconnect) = (None, None, None, None);
    let mut rights = None;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| at(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                let name = e.name().0.to_vec();
                let encoded = name == b"Path" && is_encoded(&e);
                if name == b"AccessRightList" {
                    rights = Some(decode_rights(reader, index)?);
                    buf.clear();
                    continue;
                }
                let raw = read_text(reader, &e).map_err(|e| at(e.reason))?;
                let text = raw.trim().to_owned();
                let u64_of = |field: &str| {
                    text.parse::<u64>()
                        .map_err(|_| at(format!("{field} {text:?} is not a decimal u64")))
                };
                let date_of = |field: &str| {
                    parse_rfc1123(&text)
                        .ok_or_else(|| at(format!("{field} {text:?} is not an RFC 1123 date")))
                };
                match name.as_slice() {
                    b"HandleId" => id = Some(HandleId(u64_of("HandleId")?)),
                    b"Path" if encoded => {
                        let decoded = percent_decode_str(&text).decode_utf8().map_err(|_| {
                            at(format!(
                                "encoded Path {text:?} is not percent-encoded UTF-8"
                            ))
                        })?;
                        path = Some(decoded.into_owned());
                    }
                    b"Path" => path = Some(raw),
                    b"FileId" => file_id = Some(u64_of("FileId")?),
                    b"ParentId" => parent_id = u64_of("ParentId")?,
                    b"SessionId" => session_id = Some(u64_of("SessionId")?),
                    b"ClientIp" => client_ip = Some(text),
                    b"ClientName" => client_name = Some(text),
                    b"OpenTime" => open_time = Some(date_of("OpenTime")?),
                    b"LastReconnectTime" if text.is_empty() => {}
                    b"LastReconnectTime" => reconnect = Some(date_of("LastReconnectTime")?),
                    _ => {} // Unknown elements are ignored.
                }
            }
            Event::Empty(e) => match e.name().0 {
                b"Path" => path = Some(String::new()),
                b"ClientName" => client_name = Some(String::new()),
                b"AccessRightList" => rights = Some(AccessRights::NONE),
                _ => {}
            },
            Event::End(_) => break, // </Handle>
            Event::Eof => return Err(at("body ends inside <Handle>".into())),
            _ => {}
        }
        buf.clear();
    }
    let missing = |field: &str| at(format!("no <{field}>"));
    Ok(Handle {
        handle_id: id.ok_or_else(|| missing("HandleId"))?,
        path: path.unwrap_or_default(),
        file_id: file_id.ok_or_else(|| missing("FileId"))?,
        parent_id,
        session_id: session_id.ok_or_else(|| missing("SessionId"))?,
        client_ip: client_ip.ok_or_else(|| missing("ClientIp"))?,
        client_name,
        open_time: open_time.ok_or_else(|| missing("OpenTime"))?,
        last_reconnect_time: reconnect,
        access_rights: rights,
    })
}

fn is_encoded(e: &BytesStart<'_>) -> bool {
    e.attributes()
        .flatten()
        .any(|a| a.key.0 == b"Encoded" && a.value.as_ref().eq_ignore_ascii_case(b"true"))
}

fn decode_rights(reader: &mut Reader<&[u8]>, index: usize) -> Result<AccessRights, XmlError> {
    let mut rights = AccessRights::NONE;
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| list_err(e.to_string()))?
        {
            Event::Start(e) => {
                let text = read_text(reader, &e)?.trim().to_owned();
                if e.name().0 == b"AccessRight" {
                    // Rights this client does not know yet are ignored, like unknown elements.
                    if let Some(r) = AccessRights::from_name(&text) {
                        rights = rights.union(r);
                    }
                }
            }
            Event::End(_) => return Ok(rights),
            Event::Eof => {
                return Err(list_err(format!(
                    "Handle #{}: body ends inside <AccessRightList>",
                    index + 1
                )));
            }
            _ => {}
        }
        buf.clear();
    }
}

/// Decodes an `Error` body; `status` is the response's HTTP status. Returns `None` when the
/// body is not an error body (an empty body on a HEAD, a proxy's HTML page).
pub fn decode_error(status: u16, body: &[u8]) -> Option<StorageError> {
    let mut reader = Reader::from_reader(strip_bom(body));
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut err = StorageError::new(status, ErrorCode::Other(String::new()), String::new());
    let mut saw_code = false;
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) => {
                depth += 1;
                if depth == 1 {
                    if e.name().0 != b"Error" {
                        return None;
                    }
                    continue;
                }
                let name = String::from_utf8_lossy(e.name().0).into_owned();
                let text = read_text(&mut reader, &e).ok()?;
                depth -= 1;
                match name.as_str() {
                    "Code" => {
                        err.code = ErrorCode::parse(text.trim());
                        saw_code = true;
                    }
                    "Message" => err.message = strip_message_trailer(&text).trim().to_owned(),
                    _ => err.details.push((name, text.trim().to_owned())),
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    saw_code.then_some(err)
}
