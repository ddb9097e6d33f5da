//! Conformance of the XML codec with every body shape the handle API is known to send.
//!
//! * Decoding: each file in `tests/fixtures/protocol/` (see its README) decodes to exactly the
//!   `HandleList` or `StorageError` written out here, field by field.
//! * Encoding: `encode_list` at 2019-07-07, 2021-10-04, 2021-12-02, 2023-01-03 and 2024-05-04
//!   gives the exact bytes the service sends at that version; `encode_error` likewise.
//! * Round trips: `decode(encode(x)) == x` for random handles and versions, for the fields the
//!   version carries.
//! * Malformed input: truncations, wrong roots, bad numbers and dates, garbage and deep nesting
//!   give an error naming what was wrong, and nothing panics.

use jiff::Timestamp;
use proptest::prelude::*;
use share_hygiene::protocol::{
    AccessRights, ErrorCode, Handle, HandleId, HandleList, Marker, ServiceVersion, StorageError,
    decode_error, decode_list, encode_error, encode_list, format_rfc1123,
};

const BOM: &[u8] = b"\xEF\xBB\xBF";
const DECL: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn version(s: &str) -> ServiceVersion {
    s.parse().unwrap()
}

const R: AccessRights = AccessRights::READ;
const W: AccessRights = AccessRights::WRITE;
const D: AccessRights = AccessRights::DELETE;

/// A handle with the fields every version carries; the builders below add the others.
fn handle(
    id: u64,
    path: &str,
    file_id: u64,
    parent_id: u64,
    session_id: u64,
    client_ip: &str,
    open: &str,
) -> Handle {
    Handle {
        handle_id: HandleId(id),
        path: path.to_owned(),
        file_id,
        parent_id,
        session_id,
        client_ip: client_ip.to_owned(),
        client_name: None,
        open_time: ts(open),
        last_reconnect_time: None,
        access_rights: None,
    }
}

trait HandleExt {
    fn rights(self, rights: &[AccessRights]) -> Self;
    fn name(self, name: &str) -> Self;
    fn reconnected(self, at: &str) -> Self;
}

impl HandleExt for Handle {
    fn rights(mut self, rights: &[AccessRights]) -> Self {
        self.access_rights = Some(rights.iter().fold(AccessRights::NONE, |a, r| a.union(*r)));
        self
    }
    fn name(mut self, name: &str) -> Self {
        self.client_name = Some(name.to_owned());
        self
    }
    fn reconnected(mut self, at: &str) -> Self {
        self.last_reconnect_time = Some(ts(at));
        self
    }
}

fn list(
    marker: Option<&str>,
    max_results: Option<u32>,
    handles: Vec<Handle>,
    next: Option<&str>,
) -> HandleList {
    HandleList {
        marker: marker.map(str::to_owned),
        max_results,
        handles,
        next_marker: next.map(Marker::new),
    }
}

const MARKER_PAGE2: &str =
    "1!72!c2hhcmU9ZmluYW5jZTtkaXI9O2FmdGVyPTA6NzAzNjg3NDQxNzc2NjU7cGFnZT0yO3Y9MQ--";
const MARKER_PAGE7: &str = "1!64!c2hhcmU9ZmluYW5jZTtkaXI9cmVwb3J0czthZnRlcj05Ojk7cGFnZT03O3Y9MQ--";

// ---------------------------------------------------------------------------------------------
// Fixture files: shape sanity (BOM, line ends) and exact decoding.
// ---------------------------------------------------------------------------------------------

struct Fixture {
    name: &'static str,
    body: &'static [u8],
    bom: bool,
    crlf: bool,
}

macro_rules! fixture {
    ($name:literal, bom: $bom:literal, crlf: $crlf:literal) => {
        Fixture {
            name: $name,
            body: include_bytes!(concat!("fixtures/protocol/", $name)),
            bom: $bom,
            crlf: $crlf,
        }
    };
}

fn fixtures() -> Vec<Fixture> {
    vec![
        fixture!("list-2018-11-09-maxresults-nextmarker.xml", bom: true, crlf: false),
        fixture!("list-2018-11-09-marker-echo-last-page.xml", bom: true, crlf: false),
        fixture!("list-2019-07-07-space-after-entries.xml", bom: true, crlf: false),
        fixture!("list-2019-02-02-pretty-printed.xml", bom: false, crlf: false),
        fixture!("list-2019-12-12-crlf-tabs.xml", bom: true, crlf: true),
        fixture!("list-2021-10-04-empty.xml", bom: true, crlf: false),
        fixture!("list-2022-11-02-empty-with-echoes.xml", bom: false, crlf: false),
        fixture!("list-2023-01-03-access-rights.xml", bom: false, crlf: false),
        fixture!("list-2023-01-03-clientname-after-opentime.xml", bom: true, crlf: false),
        fixture!("list-2024-02-04-clientname.xml", bom: true, crlf: false),
        fixture!("list-2024-05-04-encoded-path.xml", bom: false, crlf: false),
        fixture!("list-2024-05-04-last-reconnect-time.xml", bom: true, crlf: false),
        fixture!("list-2024-05-04-unknown-elements.xml", bom: true, crlf: false),
        fixture!("error-2019-02-02-share-not-found.xml", bom: true, crlf: false),
        fixture!("error-2019-02-02-authentication-failed.xml", bom: false, crlf: false),
        fixture!("error-2022-11-02-missing-required-header.xml", bom: true, crlf: false),
        fixture!("error-2024-05-04-out-of-range-pretty.xml", bom: true, crlf: false),
    ]
}

fn fixture_body(name: &str) -> &'static [u8] {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .body
}

fn decode_fixture(name: &str) -> HandleList {
    decode_list(fixture_body(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn fixture_files_keep_their_bytes() {
    let all = fixtures();
    let listed = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/protocol"
    ))
    .unwrap()
    .map(|e| e.unwrap().file_name().into_string().unwrap())
    .filter(|n| n.ends_with(".xml"))
    .count();
    assert_eq!(
        listed,
        all.len(),
        "every fixture file is listed in fixtures()"
    );
    for f in all {
        assert_eq!(f.body.starts_with(BOM), f.bom, "{}: BOM", f.name);
        let rest = f.body.strip_prefix(BOM).unwrap_or(f.body);
        assert!(rest.starts_with(DECL.as_bytes()), "{}: declaration", f.name);
        assert!(std::str::from_utf8(f.body).is_ok(), "{}: UTF-8", f.name);
        let has_cr = f.body.contains(&b'\r');
        assert_eq!(has_cr, f.crlf, "{}: CR line ends", f.name);
    }
}

#[test]
fn v2018_first_page_echoes_max_results_and_has_next_marker() {
    let got = decode_fixture("list-2018-11-09-maxresults-nextmarker.xml");
    let ip = "198.51.100.23:49152";
    let want = list(
        None,
        Some(2),
        vec![
            handle(
                70368744177664,
                "",
                0,
                0,
                12297829382473034410,
                ip,
                "2019-03-12T08:30:05Z",
            ),
            handle(
                70368744177665,
                "",
                0,
                0,
                12297829382473034410,
                ip,
                "2019-03-12T08:30:07Z",
            ),
        ],
        Some(MARKER_PAGE2),
    );
    assert_eq!(got, want);
    // The marker's shape: 1!<payload length>!<payload>.
    let next = got.next_marker.unwrap();
    let parts: Vec<&str> = next.as_str().splitn(3, '!').collect();
    assert_eq!(parts[0], "1");
    assert_eq!(parts[1].parse::<usize>().unwrap(), parts[2].len());
}

#[test]
fn v2018_next_page_echoes_marker_and_ends_with_empty_next_marker() {
    let ip = "198.51.100.23:49152";
    let session = 12297829382473034410;
    let dir = 13835058055282163712;
    let want = list(
        Some(MARKER_PAGE2),
        None,
        vec![
            handle(
                70368744177666,
                "",
                0,
                0,
                session,
                ip,
                "2019-03-12T08:31:10Z",
            ),
            handle(
                70368744180001,
                "budget.xlsx",
                16140901064495857664,
                0,
                session,
                ip,
                "2019-03-12T08:29:58Z",
            ),
            handle(
                70368744180002,
                "archive/notes.txt",
                10376293541461622784,
                dir,
                session,
                ip,
                "2019-03-12T07:45:00Z",
            ),
            handle(
                70368744180003,
                "archive/old.log",
                11529215046068469760,
                dir,
                session,
                ip,
                "2019-03-12T07:46:19Z",
            ),
        ],
        None,
    );
    assert_eq!(
        decode_fixture("list-2018-11-09-marker-echo-last-page.xml"),
        want
    );
}

#[test]
fn v2019_literal_space_after_entries_and_paths_with_spaces() {
    let ip = "203.0.113.77:50123";
    let session = 4611686018427387905;
    let want = list(
        None,
        None,
        vec![
            handle(51539607552, "", 0, 0, session, ip, "2019-11-20T16:02:11Z"),
            handle(
                51539607560,
                "Team Roadmap Draft.docx",
                12682136550675316736,
                0,
                session,
                ip,
                "2019-11-20T16:01:40Z",
            ),
            handle(
                51539607561,
                "Shared Docs/Meeting Notes 2019.txt",
                9799832789158199296,
                17293822569102704640,
                session,
                ip,
                "2019-11-20T16:01:52Z",
            ),
        ],
        None,
    );
    assert_eq!(
        decode_fixture("list-2019-07-07-space-after-entries.xml"),
        want
    );
}

#[test]
fn v2019_pretty_printed_without_bom() {
    let want = list(
        None,
        Some(10),
        vec![
            handle(
                88046829568,
                "scans/2019/invoice 0042.pdf",
                14411518807585587200,
                10088063165309911040,
                2305843009213693953,
                "192.0.2.10:445",
                "2019-05-21T09:00:00Z",
            ),
            handle(
                88046829569,
                "scans",
                10088063165309911040,
                0,
                2305843009213693954,
                "[2001:db8::5]:51000",
                "2019-05-21T09:00:30Z",
            ),
        ],
        None,
    );
    let got = decode_fixture("list-2019-02-02-pretty-printed.xml");
    assert_eq!(got, want);
    assert_eq!(
        got.handles[1].client_addr(),
        Some("2001:db8::5".parse().unwrap())
    );
}

#[test]
fn v2019_crlf_and_tabs_between_elements() {
    let want = list(
        None,
        None,
        vec![handle(
            96636764160,
            "logs/app.log",
            13258597302978740224,
            15564440312192434176,
            6917529027641081857,
            "192.0.2.44:60001",
            "2019-12-31T23:59:59Z",
        )],
        None,
    );
    assert_eq!(decode_fixture("list-2019-12-12-crlf-tabs.xml"), want);
}

#[test]
fn empty_listing_self_closing_entries_and_next_marker() {
    assert_eq!(
        decode_fixture("list-2021-10-04-empty.xml"),
        HandleList::default()
    );
}

#[test]
fn empty_last_page_still_echoes_marker_and_max_results() {
    assert_eq!(
        decode_fixture("list-2022-11-02-empty-with-echoes.xml"),
        list(Some(MARKER_PAGE7), Some(5000), vec![], None)
    );
}

#[test]
fn v2023_access_right_list_after_session_id() {
    let dir = 13835339530258874368;
    let want = list(
        None,
        None,
        vec![
            handle(
                30064771072,
                "reports",
                dir,
                0,
                7782220156096217089,
                "198.51.100.200:50321",
                "2023-04-02T11:20:00Z",
            )
            .rights(&[R, W, D]),
            handle(
                30064771073,
                "reports/q1.csv",
                9223653511831486464,
                dir,
                7782220156096217089,
                "198.51.100.200:50321",
                "2023-04-02T11:20:04Z",
            )
            .rights(&[R]),
            handle(
                30064771074,
                "reports/q2.csv",
                9223794249319841792,
                dir,
                7782220156096217090,
                "198.51.100.201:50400",
                "2023-04-02T11:21:30Z",
            )
            .rights(&[]),
        ],
        None,
    );
    let got = decode_fixture("list-2023-01-03-access-rights.xml");
    assert_eq!(got, want);
    assert!(got.handles.iter().all(|h| h.client_name.is_none()));
    assert_eq!(got.handles[2].access_rights, Some(AccessRights::NONE));
}

#[test]
fn v2023_variant_with_client_name_after_open_time() {
    let want = list(
        None,
        None,
        vec![
            handle(
                30064771090,
                "reports/q3.csv",
                9224216986808336384,
                13835339530258874368,
                7782220156096217091,
                "198.51.100.202:50999",
                "2023-06-15T07:05:09Z",
            )
            .rights(&[R, W])
            .name("FIN-LAPTOP-12"),
        ],
        None,
    );
    assert_eq!(
        decode_fixture("list-2023-01-03-clientname-after-opentime.xml"),
        want
    );
}

#[test]
fn v2024_order_with_client_name_before_open_time() {
    let want = list(
        None,
        None,
        vec![
            handle(
                1099511627776,
                "projects/alpha/spec.md",
                9511602413006487552,
                11817445422220181504,
                3458764513820540929,
                "203.0.113.5:61234",
                "2024-03-04T13:14:15Z",
            )
            .rights(&[W])
            .name("DEV-WS-0420"),
        ],
        None,
    );
    assert_eq!(decode_fixture("list-2024-02-04-clientname.xml"), want);
}

#[test]
fn v2024_encoded_paths_are_percent_decoded_plain_ones_are_not() {
    let session = 1152921504606846977;
    let ip = "192.0.2.99:49999";
    let want = list(
        None,
        None,
        vec![
            handle(
                2199023255552,
                "drafts/memo\u{FFFE}2024.txt",
                10952754293765046272,
                16717361816799281152,
                session,
                ip,
                "2024-06-01T00:00:01Z",
            )
            .rights(&[R])
            .name("BUILD-AGENT-07"),
            handle(
                2199023255553,
                "Café Menu/men\u{FFFF}u\n.txt",
                10952754293765046273,
                16717361816799281153,
                session,
                ip,
                "2024-06-01T00:00:02Z",
            )
            .rights(&[R, D])
            .name("BUILD-AGENT-07"),
            handle(
                2199023255554,
                "drafts/100% done.txt",
                10952754293765046274,
                16717361816799281152,
                session,
                ip,
                "2024-06-01T00:00:03Z",
            )
            .rights(&[W])
            .name("BUILD-AGENT-07"),
        ],
        None,
    );
    assert_eq!(decode_fixture("list-2024-05-04-encoded-path.xml"), want);
}

#[test]
fn v2024_last_reconnect_time_present_empty_and_absent() {
    let want = list(
        None,
        None,
        vec![
            handle(
                3298534883328,
                "vm-disks/node-3.vhdx",
                12105675798371893248,
                0,
                8070450532247928833,
                "203.0.113.140:1024",
                "2024-07-10T02:00:00Z",
            )
            .rights(&[R, W])
            .name("AKS-NODE-3")
            .reconnected("2024-07-12T18:45:30Z"),
            handle(
                3298534883329,
                "vm-disks/node-4.vhdx",
                12105675798371893249,
                0,
                8070450532247928834,
                "203.0.113.141:1025",
                "2024-07-10T02:00:05Z",
            )
            .rights(&[R])
            .name("AKS-NODE-4"),
            handle(
                3298534883330,
                "vm-disks",
                11817445422220181505,
                0,
                8070450532247928834,
                "203.0.113.141:1025",
                "2024-07-10T02:00:06Z",
            )
            .rights(&[R])
            .name("AKS-NODE-4"),
        ],
        None,
    );
    let got = decode_fixture("list-2024-05-04-last-reconnect-time.xml");
    assert_eq!(got, want);
    assert_eq!(got.handles[0].held_since(), ts("2024-07-12T18:45:30Z"));
}

#[test]
fn unknown_elements_attributes_and_comments_are_ignored() {
    let want = list(
        None,
        None,
        vec![
            handle(
                4398046511104,
                "media/clip%20one.mp4",
                12970366926827028480,
                9799832789158199297,
                5764607523034234881,
                "192.0.2.250:445",
                "2024-09-09T09:09:09Z",
            )
            .rights(&[R])
            .name("MEDIA-01"),
        ],
        None,
    );
    assert_eq!(decode_fixture("list-2024-05-04-unknown-elements.xml"), want);
}

#[test]
fn error_share_not_found_strips_request_id_and_time() {
    let got = decode_error(404, fixture_body("error-2019-02-02-share-not-found.xml"));
    assert_eq!(got, Some(StorageError::share_not_found()));
    let got = got.unwrap();
    assert_eq!(got.status, 404);
    assert_eq!(got.code, ErrorCode::ShareNotFound);
    assert_eq!(got.message, "The specified share does not exist.");
    assert!(got.details.is_empty());
}

#[test]
fn error_authentication_failed_keeps_the_detail_verbatim() {
    let sts = "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Wed, 15 Jan 2020 10:20:30 GMT\n\
               x-ms-version:2019-02-02\n/exampleaccount/finance\ncomp:listhandles";
    let detail = format!(
        "The MAC signature found in the HTTP request 'Tm90QVJlYWxTaWduYXR1cmVKdXN0QVRlc3RWYWx1ZQ==' \
         is not the same as any computed signature. Server used following string to sign: '{sts}'."
    );
    let want = StorageError {
        status: 403,
        code: ErrorCode::AuthenticationFailed,
        message: "Server failed to authenticate the request. Make sure the value of Authorization \
                  header is formed correctly including the signature."
            .into(),
        details: vec![("AuthenticationErrorDetail".into(), detail.clone())],
    };
    let got = decode_error(
        403,
        fixture_body("error-2019-02-02-authentication-failed.xml"),
    );
    assert_eq!(got, Some(want));
    assert_eq!(
        got.unwrap().detail("AuthenticationErrorDetail"),
        Some(detail.as_str())
    );
}

#[test]
fn error_missing_required_header_names_the_header() {
    let got = decode_error(
        400,
        fixture_body("error-2022-11-02-missing-required-header.xml"),
    );
    assert_eq!(
        got,
        Some(StorageError::missing_header("x-ms-file-request-intent"))
    );
    assert_eq!(
        got.unwrap().detail("HeaderName"),
        Some("x-ms-file-request-intent")
    );
}

#[test]
fn error_pretty_printed_keeps_details_in_order() {
    let got = decode_error(
        400,
        fixture_body("error-2024-05-04-out-of-range-pretty.xml"),
    );
    assert_eq!(
        got,
        Some(StorageError::out_of_range_query("maxresults", "0", 1, 5000))
    );
}

#[test]
fn error_bodies_are_not_lists_and_lists_are_not_errors() {
    for f in fixtures() {
        if f.name.starts_with("error-") {
            let err = decode_list(f.body).expect_err(f.name);
            assert!(err.reason.contains("Error"), "{}: {err}", f.name);
            assert!(
                err.reason.contains("EnumerationResults"),
                "{}: {err}",
                f.name
            );
        } else {
            assert_eq!(decode_error(200, f.body), None, "{}", f.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder: exact bytes per version.
// ---------------------------------------------------------------------------------------------

fn encode(
    v: &str,
    marker: Option<&str>,
    max: Option<u32>,
    handles: &[Handle],
    next: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let next = next.map(Marker::new);
    encode_list(&mut out, version(v), marker, max, handles, next.as_ref());
    out
}

fn body(xml: &str) -> Vec<u8> {
    let mut out = BOM.to_vec();
    out.extend_from_slice(DECL.as_bytes());
    out.extend_from_slice(xml.as_bytes());
    out
}

#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want),
        "bytes differ"
    );
    assert_eq!(got, want);
}

/// A file handle with every optional field set.
fn full_handle() -> Handle {
    handle(
        42,
        "reports/q1 summary & notes <draft>.csv",
        9223653511831486465,
        13835339530258874368,
        7,
        "198.51.100.7:50000",
        "2024-01-02T03:04:05Z",
    )
    .rights(&[R, W])
    .name("FIN-PC-01")
    .reconnected("2024-01-03T00:00:00Z")
}

/// A share-root handle: empty path, no rights listed, no client name.
fn root_handle() -> Handle {
    handle(43, "", 0, 0, 8, "[2001:db8::7]:445", "2024-01-02T03:04:06Z").rights(&[])
}

const FULL_COMMON: &str = "<HandleId>42</HandleId>\
    <Path>reports/q1 summary &amp; notes &lt;draft&gt;.csv</Path>\
    <FileId>9223653511831486465</FileId><ParentId>13835339530258874368</ParentId>\
    <SessionId>7</SessionId>";
const FULL_TIMES: &str = "<OpenTime>Tue, 02 Jan 2024 03:04:05 GMT</OpenTime>\
    <LastReconnectTime>Wed, 03 Jan 2024 00:00:00 GMT</LastReconnectTime>";
const ROOT_COMMON: &str = "<HandleId>43</HandleId><Path /><FileId>0</FileId>\
    <ParentId>0</ParentId><SessionId>8</SessionId>";
const ROOT_TIMES: &str = "<OpenTime>Tue, 02 Jan 2024 03:04:06 GMT</OpenTime>";

#[test]
fn encode_2019_07_07_has_no_gated_fields() {
    let got = encode(
        "2019-07-07",
        Some(MARKER_PAGE2),
        Some(2),
        &[full_handle(), root_handle()],
        Some(MARKER_PAGE7),
    );
    let want = body(&format!(
        "<EnumerationResults><Marker>{MARKER_PAGE2}</Marker><MaxResults>2</MaxResults><Entries>\
         <Handle>{FULL_COMMON}<ClientIp>198.51.100.7:50000</ClientIp>{FULL_TIMES}</Handle>\
         <Handle>{ROOT_COMMON}<ClientIp>[2001:db8::7]:445</ClientIp>{ROOT_TIMES}</Handle>\
         </Entries><NextMarker>{MARKER_PAGE7}</NextMarker></EnumerationResults>"
    ));
    assert_bytes(&got, &want);
}

#[test]
fn encode_2023_01_03_adds_access_rights_but_no_client_name() {
    let got = encode(
        "2023-01-03",
        None,
        None,
        &[full_handle(), root_handle()],
        None,
    );
    let want = body(&format!(
        "<EnumerationResults><Entries>\
         <Handle>{FULL_COMMON}<AccessRightList><AccessRight>Read</AccessRight>\
         <AccessRight>Write</AccessRight></AccessRightList>\
         <ClientIp>198.51.100.7:50000</ClientIp>{FULL_TIMES}</Handle>\
         <Handle>{ROOT_COMMON}<AccessRightList /><ClientIp>[2001:db8::7]:445</ClientIp>\
         {ROOT_TIMES}</Handle>\
         </Entries><NextMarker /></EnumerationResults>"
    ));
    assert_bytes(&got, &want);
}

#[test]
fn encode_2024_05_04_uses_the_2024_element_order() {
    let all = full_handle().rights(&[R, W, D]);
    let got = encode("2024-05-04", None, Some(5000), &[all, root_handle()], None);
    let want = body(&format!(
        "<EnumerationResults><MaxResults>5000</MaxResults><Entries>\
         <Handle>{FULL_COMMON}<AccessRightList><AccessRight>Read</AccessRight>\
         <AccessRight>Write</AccessRight><AccessRight>Delete</AccessRight></AccessRightList>\
         <ClientIp>198.51.100.7:50000</ClientIp><ClientName>FIN-PC-01</ClientName>{FULL_TIMES}\
         </Handle>\
         <Handle>{ROOT_COMMON}<AccessRightList /><ClientIp>[2001:db8::7]:445</ClientIp>\
         {ROOT_TIMES}</Handle>\
         </Entries><NextMarker /></EnumerationResults>"
    ));
    assert_bytes(&got, &want);
}

#[test]
fn encode_empty_page_uses_self_closing_forms() {
    for v in ["2018-11-09", "2019-07-07", "2023-01-03", "2024-05-04"] {
        let want = body("<EnumerationResults><Entries /><NextMarker /></EnumerationResults>");
        assert_bytes(&encode(v, None, None, &[], None), &want);
        // An empty next marker is the same as none.
        assert_bytes(&encode(v, None, None, &[], Some("")), &want);
    }
}

/// The tag names of a body's elements, in document order.
fn tag_sequence(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split('<')
        .skip(1)
        .filter(|t| !t.starts_with('/') && !t.starts_with('?'))
        .map(|t| t.split(['>', ' ', '/']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn encode_element_order_and_gating_across_versions() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "2018-11-09",
            &[
                "HandleId",
                "Path",
                "FileId",
                "ParentId",
                "SessionId",
                "ClientIp",
                "OpenTime",
                "LastReconnectTime",
            ],
        ),
        (
            "2022-11-02",
            &[
                "HandleId",
                "Path",
                "FileId",
                "ParentId",
                "SessionId",
                "ClientIp",
                "OpenTime",
                "LastReconnectTime",
            ],
        ),
        (
            "2023-01-03",
            &[
                "HandleId",
                "Path",
                "FileId",
                "ParentId",
                "SessionId",
                "AccessRightList",
                "AccessRight",
                "AccessRight",
                "ClientIp",
                "OpenTime",
                "LastReconnectTime",
            ],
        ),
        (
            "2024-02-04",
            &[
                "HandleId",
                "Path",
                "FileId",
                "ParentId",
                "SessionId",
                "AccessRightList",
                "AccessRight",
                "AccessRight",
                "ClientIp",
                "ClientName",
                "OpenTime",
                "LastReconnectTime",
            ],
        ),
        (
            "2025-11-05",
            &[
                "HandleId",
                "Path",
                "FileId",
                "ParentId",
                "SessionId",
                "AccessRightList",
                "AccessRight",
                "AccessRight",
                "ClientIp",
                "ClientName",
                "OpenTime",
                "LastReconnectTime",
            ],
        ),
    ];
    for (v, handle_tags) in cases {
        let got = tag_sequence(&encode(v, None, None, &[full_handle()], None));
        let mut want = vec!["EnumerationResults", "Entries", "Handle"];
        want.extend_from_slice(handle_tags);
        want.push("NextMarker");
        assert_eq!(got, want, "{v}");
    }
}

#[test]
fn encode_percent_encodes_xml_invalid_paths_with_the_attribute_from_2021_12_02() {
    let odd = handle(
        44,
        "drafts/memo\u{FFFE}2024 ü.txt",
        5,
        6,
        7,
        "192.0.2.1:445",
        "2024-01-02T03:04:05Z",
    );
    let encoded = "<Path Encoded=\"true\">drafts/memo%EF%BF%BE2024%20%C3%BC.txt</Path>";
    for v in ["2018-11-09", "2019-07-07", "2021-10-04"] {
        let got = encode(v, None, None, std::slice::from_ref(&odd), None);
        let text = String::from_utf8(got).unwrap();
        assert!(!text.contains("Encoded"), "{v}: {text}");
        // Whatever the path becomes, the body must stay valid XML: no raw U+FFFE.
        assert!(!text.contains('\u{FFFE}'), "{v}: {text}");
    }
    for v in ["2021-12-02", "2023-01-03", "2024-05-04"] {
        let got = encode(v, None, None, std::slice::from_ref(&odd), None);
        let text = String::from_utf8(got.clone()).unwrap();
        assert!(text.contains(encoded), "{v}: {text}");
        assert_eq!(
            decode_list(&got).unwrap().handles,
            std::slice::from_ref(&odd),
            "{v}"
        );
    }
    // Paths XML can carry are never encoded, at any version.
    let plain = handle(
        45,
        "a b/ü%20.txt",
        5,
        6,
        7,
        "192.0.2.1:445",
        "2024-01-02T03:04:05Z",
    );
    let got = encode("2024-05-04", None, None, &[plain], None);
    let text = String::from_utf8(got).unwrap();
    assert!(text.contains("<Path>a b/ü%20.txt</Path>"), "{text}");
}

#[test]
fn encode_error_writes_bom_code_message_trailer_and_details() {
    let err = StorageError::missing_header("x-ms-file-request-intent");
    let got = encode_error(
        &err,
        "0b1c2d3e-0000-4000-8000-000000000001",
        ts("2024-02-29T12:00:00.5Z"),
    );
    let want = body(
        "<Error><Code>MissingRequiredHeader</Code><Message>An HTTP header that's mandatory for \
         this request is not specified.\nRequestId:0b1c2d3e-0000-4000-8000-000000000001\n\
         Time:2024-02-29T12:00:00.5000000Z</Message>\
         <HeaderName>x-ms-file-request-intent</HeaderName></Error>",
    );
    assert_bytes(&got, &want);
    assert_eq!(decode_error(400, &got), Some(err));
}

#[test]
fn error_with_empty_message_round_trips() {
    let err = StorageError::new(500, ErrorCode::InternalError, "");
    let got = encode_error(&err, "rid-1", ts("2024-02-29T12:00:00Z"));
    assert_eq!(decode_error(500, &got), Some(err));
}

// ---------------------------------------------------------------------------------------------
// Round trips.
// ---------------------------------------------------------------------------------------------

fn needs_encoding(s: &str) -> bool {
    s.chars()
        .any(|c| c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}')
}

fn arb_version() -> impl Strategy<Value = ServiceVersion> {
    prop_oneof![
        prop::sample::select(vec![
            "2018-11-09",
            "2019-02-02",
            "2019-07-07",
            "2019-12-12",
            "2021-10-04",
            "2021-12-02",
            "2022-11-02",
            "2023-01-03",
            "2023-11-03",
            "2024-02-04",
            "2024-05-04",
            "2025-11-05",
            "2026-10-06",
        ])
        .prop_map(version),
        (2018u16..=2030, 1u8..=12, 1u8..=28)
            .prop_map(|(y, m, d)| version(&format!("{y:04}-{m:02}-{d:02}"))),
    ]
}

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9 ._-]{1,20}(/[a-zA-Z0-9 ._-]{1,20}){0,4}",
        any::<String>(),
        prop::collection::vec(
            prop_oneof![
                any::<char>(),
                Just('\u{FFFE}'),
                Just('\u{FFFF}'),
                Just('%'),
                Just('&'),
                Just('<'),
                Just('/'),
                Just(' '),
            ],
            1..30
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

fn arb_client_ip() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("{}:{port}", std::net::Ipv4Addr::from(ip))),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))),
    ]
}

fn arb_time() -> impl Strategy<Value = Timestamp> {
    // RFC 1123 dates as HTTP knows them: 1970 to 9999, whole seconds.
    (0i64..=253_402_300_799).prop_map(|s| Timestamp::from_second(s).unwrap())
}

prop_compose! {
    fn arb_handle()(
        id in any::<u64>(),
        path in arb_path(),
        file_id in any::<u64>(),
        parent_id in any::<u64>(),
        session_id in any::<u64>(),
        client_ip in arb_client_ip(),
        client_name in proptest::option::of("[A-Za-z0-9][A-Za-z0-9 ._&<>'\"-]{0,14}[A-Za-z0-9]"),
        open_time in arb_time(),
        last_reconnect_time in proptest::option::of(arb_time()),
        access_rights in proptest::option::of((0u8..8).prop_map(AccessRights::from_bits)),
    ) -> Handle {
        Handle {
            handle_id: HandleId(id),
            path,
            file_id,
            parent_id,
            session_id,
            client_ip,
            client_name,
            open_time,
            last_reconnect_time,
            access_rights,
        }
    }
}

fn arb_marker() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/]{1,120}-{0,2}".prop_map(|p| format!("1!{}!{p}", p.len()))
}

/// What a handle looks like after a trip through `version`: fields it predates are dropped.
fn as_carried(mut h: Handle, v: ServiceVersion) -> Handle {
    if !v.has_access_rights() {
        h.access_rights = None;
    }
    if !v.has_client_name() {
        h.client_name = None;
    }
    h
}

proptest! {
    #[test]
    fn list_round_trips(
        v in arb_version(),
        handles in prop::collection::vec(arb_handle(), 0..6),
        marker in proptest::option::of(arb_marker()),
        max_results in proptest::option::of(1u32..=5000),
        next in proptest::option::of(arb_marker()),
    ) {
        // Before 2021-12-02 a path XML cannot carry has no faithful form; those versions get
        // only paths it can.
        let handles: Vec<Handle> = handles
            .into_iter()
            .filter(|h| v.has_encoded_paths() || !needs_encoding(&h.path))
            .collect();
        let mut out = Vec::new();
        let next_marker = next.map(Marker::new);
        encode_list(&mut out, v, marker.as_deref(), max_results, &handles, next_marker.as_ref());
        let decoded = decode_list(&out).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out)))
        })?;
        let want = HandleList {
            marker,
            max_results,
            handles: handles.into_iter().map(|h| as_carried(h, v)).collect(),
            next_marker,
        };
        prop_assert_eq!(decoded, want);
    }

    #[test]
    fn list_round_trips_without_bom_and_with_whitespace(
        v in arb_version(),
        handles in prop::collection::vec(arb_handle(), 1..4),
        ws in "[ \t\r\n]{1,4}",
    ) {
        let handles: Vec<Handle> = handles
            .into_iter()
            .filter(|h| v.has_encoded_paths() || !needs_encoding(&h.path))
            .collect();
        let mut out = Vec::new();
        encode_list(&mut out, v, None, None, &handles, None);
        // Whitespace between every pair of adjacent tags, and no BOM.
        let text = String::from_utf8(out[BOM.len()..].to_vec()).unwrap();
        let spaced = text.replace("><", &format!(">{ws}<"));
        let decoded = decode_list(spaced.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{spaced}")))?;
        let want: Vec<Handle> = handles.into_iter().map(|h| as_carried(h, v)).collect();
        prop_assert_eq!(decoded.handles, want);
    }

    #[test]
    fn error_round_trips(
        code in prop_oneof![
            prop::sample::select(vec![
                ErrorCode::ShareNotFound,
                ErrorCode::ResourceNotFound,
                ErrorCode::AuthenticationFailed,
                ErrorCode::MissingRequiredHeader,
                ErrorCode::ServerBusy,
            ]),
            "Custom[A-Za-z]{1,20}".prop_map(ErrorCode::Other),
        ],
        status in 400u16..600,
        message in "[A-Za-z0-9]([ -~]{0,60}[A-Za-z0-9.])?",
        details in prop::collection::vec(
            ("X[A-Za-z0-9]{0,15}", "[A-Za-z0-9]([ -~]{0,40}[A-Za-z0-9])?"),
            0..4,
        ),
        request_id in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        now in arb_time(),
    ) {
        let err = StorageError { status, code, message, details };
        let body = encode_error(&err, &request_id, now);
        prop_assert!(body.starts_with(BOM));
        prop_assert_eq!(decode_error(status, &body), Some(err));
    }
}

#[test]
fn path_with_leading_or_trailing_whitespace_round_trips() {
    // Names with edge whitespace are legal on SMB shares (leading spaces, a trailing
    // no-break space or ideographic space), and a client that trims them closes nothing.
    for path in [
        " leading.txt",
        "dir/trailing\u{00A0}",
        "\u{3000}wide",
        "x\u{85}",
        " ",
    ] {
        let h = handle(1, path, 2, 3, 4, "192.0.2.1:445", "2024-01-02T03:04:05Z");
        for v in ["2019-07-07", "2024-05-04"] {
            let got = encode(v, None, None, std::slice::from_ref(&h), None);
            let decoded = decode_list(&got).unwrap();
            assert_eq!(decoded.handles[0].path, path, "{v} {path:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed input.
// ---------------------------------------------------------------------------------------------

/// A one-handle body at 2024-05-04 with `field` set to `value` (or left out when `None`).
fn body_with(field: &str, value: Option<&str>) -> Vec<u8> {
    let fields = [
        ("HandleId", "77"),
        ("Path", "a/b.txt"),
        ("FileId", "5"),
        ("ParentId", "6"),
        ("SessionId", "7"),
        ("ClientIp", "192.0.2.1:445"),
        ("OpenTime", "Tue, 02 Jan 2024 03:04:05 GMT"),
        ("LastReconnectTime", "Wed, 03 Jan 2024 00:00:00 GMT"),
    ];
    let mut xml = String::from("<EnumerationResults><Entries><Handle>");
    for (name, default) in fields {
        let v = if name == field { value } else { Some(default) };
        if let Some(v) = v {
            xml.push_str(&format!("<{name}>{v}</{name}>"));
        }
    }
    xml.push_str("</Handle></Entries><NextMarker /></EnumerationResults>");
    body(&xml)
}

#[track_caller]
fn assert_list_err(input: &[u8], needles: &[&str]) {
    match decode_list(input) {
        Ok(list) => panic!(
            "decoded {list:?} from malformed input:\n{}",
            String::from_utf8_lossy(input)
        ),
        Err(e) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "{msg:?} does not name {n:?}");
            }
        }
    }
}

#[test]
fn body_with_all_fields_is_valid() {
    let got = decode_list(&body_with("", None)).unwrap();
    assert_eq!(
        got.handles,
        [handle(
            77,
            "a/b.txt",
            5,
            6,
            7,
            "192.0.2.1:445",
            "2024-01-02T03:04:05Z"
        )
        .reconnected("2024-01-03T00:00:00Z")]
    );
}

#[test]
fn non_numeric_ids_are_refused_naming_field_and_value() {
    for field in ["HandleId", "FileId", "ParentId", "SessionId"] {
        for bad in [
            "12a",
            "-5",
            "1.5",
            "0x10",
            "1e3",
            "18446744073709551616",
            "",
            "seven",
        ] {
            let needles: &[&str] = if bad.is_empty() {
                &[field]
            } else {
                &[field, bad]
            };
            assert_list_err(&body_with(field, Some(bad)), needles);
        }
    }
}

#[test]
fn non_numeric_max_results_is_refused() {
    for bad in ["ten", "-1", "4294967296", "1.0"] {
        let xml = body(&format!(
            "<EnumerationResults><MaxResults>{bad}</MaxResults><Entries /><NextMarker />\
             </EnumerationResults>"
        ));
        assert_list_err(&xml, &["MaxResults", bad]);
    }
}

#[test]
fn bad_dates_are_refused_naming_field_and_value() {
    for field in ["OpenTime", "LastReconnectTime"] {
        for bad in [
            "2024-01-02T03:04:05Z",
            "yesterday",
            "Mon, 02 Jan 2024 03:04:05 GMT", // 2024-01-02 was a Tuesday
            "Fri, 30 Feb 2024 00:00:00 GMT",
            "Tue, 02 Jan 2024 25:00:00 GMT",
            "Tue, 02 Foo 2024 03:04:05 GMT",
            "1704164645",
        ] {
            assert_list_err(&body_with(field, Some(bad)), &[field, bad]);
        }
    }
}

#[test]
fn missing_required_fields_are_named() {
    for field in ["HandleId", "FileId", "SessionId", "ClientIp", "OpenTime"] {
        assert_list_err(&body_with(field, None), &[field]);
    }
    // The error says which handle was bad.
    let two = body(
        "<EnumerationResults><Entries>\
         <Handle><HandleId>1</HandleId><Path /><FileId>0</FileId><SessionId>1</SessionId>\
         <ClientIp>192.0.2.1:1</ClientIp><OpenTime>Tue, 02 Jan 2024 03:04:05 GMT</OpenTime></Handle>\
         <Handle><HandleId>x2</HandleId></Handle>\
         </Entries><NextMarker /></EnumerationResults>",
    );
    assert_list_err(&two, &["Handle #2", "HandleId", "x2"]);
}

#[test]
fn bad_encoded_path_is_refused() {
    for bad in ["%FF%FE", "caf%C3", "%ED%A0%80"] {
        let xml = body(&format!(
            "<EnumerationResults><Entries><Handle><HandleId>1</HandleId>\
             <Path Encoded=\"true\">{bad}</Path><FileId>0</FileId><SessionId>1</SessionId>\
             <ClientIp>192.0.2.1:1</ClientIp><OpenTime>Tue, 02 Jan 2024 03:04:05 GMT</OpenTime>\
             </Handle></Entries><NextMarker /></EnumerationResults>"
        ));
        assert_list_err(&xml, &["Path", bad]);
    }
}

#[test]
fn wrong_root_elements_are_named() {
    for (input, root) in [
        (
            "<ListHandlesResponse><Entries /></ListHandlesResponse>",
            "ListHandlesResponse",
        ),
        ("<Error><Code>ServerBusy</Code></Error>", "Error"),
        ("<html><body>502 Bad Gateway</body></html>", "html"),
        (
            "<EnumerationResultsX><Entries /></EnumerationResultsX>",
            "EnumerationResultsX",
        ),
    ] {
        assert_list_err(&body(input), &[root, "EnumerationResults"]);
    }
    for input in ["", "   ", "not xml at all", "<Other />"] {
        assert_list_err(input.as_bytes(), &["EnumerationResults"]);
    }
}

#[test]
fn mismatched_end_tags_are_refused() {
    assert_list_err(
        &body("<EnumerationResults><Entries></Handle></Entries></EnumerationResults>"),
        &[],
    );
    assert_list_err(
        &body(
            "<EnumerationResults><Entries><Handle><HandleId>1</FileId></Handle></Entries>\
             </EnumerationResults>",
        ),
        &[],
    );
    assert_list_err(
        &body("<EnumerationResults><Entries></EnumerationResults>"),
        &[],
    );
}

#[test]
fn truncated_inside_a_handle_names_the_handle() {
    let full = fixture_body("list-2024-05-04-last-reconnect-time.xml");
    let text = std::str::from_utf8(full).unwrap();
    let cut = text.find("<ClientIp>").unwrap();
    assert_list_err(&full[..cut], &["Handle"]);
}

#[test]
fn every_truncation_of_a_list_body_is_refused() {
    for f in fixtures() {
        if !f.name.starts_with("list-") {
            continue;
        }
        // Trailing whitespace after the root's end tag is not part of the document.
        let end = f.body.len()
            - f.body
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        for len in 0..end {
            let prefix = &f.body[..len];
            if let Ok(list) = decode_list(prefix) {
                panic!(
                    "{}: the first {len} of {end} bytes decode to {} handle(s) instead of an error:\n{}",
                    f.name,
                    list.handles.len(),
                    String::from_utf8_lossy(prefix)
                );
            }
        }
    }
}

#[test]
fn deeply_nested_junk_never_overflows() {
    const DEPTH: usize = 100_000;
    // Unclosed: must be refused.
    let mut open = String::from("<EnumerationResults><Entries>");
    open.push_str(&"<a>".repeat(DEPTH));
    assert!(decode_list(&body(&open)).is_err());
    // Junk as the root.
    let junk = "<a>".repeat(DEPTH) + &"</a>".repeat(DEPTH);
    assert_list_err(&body(&junk), &["EnumerationResults"]);
    assert_eq!(decode_error(500, &body(&junk)), None);
    // Closed junk inside a handle and at the root level is ignored.
    let nested = "<x>".repeat(DEPTH) + "deep" + &"</x>".repeat(DEPTH);
    let xml = format!(
        "<EnumerationResults>{nested}<Entries>{nested}<Handle><HandleId>1</HandleId>{nested}\
         <Path>p</Path><FileId>2</FileId><SessionId>3</SessionId><ClientIp>192.0.2.1:1</ClientIp>\
         <OpenTime>Tue, 02 Jan 2024 03:04:05 GMT</OpenTime></Handle></Entries><NextMarker />\
         </EnumerationResults>"
    );
    let got = decode_list(&body(&xml)).unwrap();
    assert_eq!(
        got.handles,
        [handle(
            1,
            "p",
            2,
            0,
            3,
            "192.0.2.1:1",
            "2024-01-02T03:04:05Z"
        )]
    );
    // And in an error body.
    let err = body(&format!(
        "<Error><Code>ServerBusy</Code>{nested}<Message>busy</Message></Error>"
    ));
    let got = decode_error(503, &err).unwrap();
    assert_eq!(got.code, ErrorCode::ServerBusy);
    assert_eq!(got.message, "busy");
}

#[test]
fn garbage_is_refused() {
    let inputs: [&[u8]; 7] = [
        b"\x00\x01\x02\x03",
        b"\xFF\xFE<\x00E\x00",
        b"\xEF\xBB\xBF",
        b"<EnumerationResults><Entries><Handle><HandleId>\xFF\xFE</HandleId>",
        b"<<<<>>>>",
        b"<EnumerationResults><![CDATA[",
        b"<EnumerationResults><!-- never closed",
    ];
    for input in inputs {
        assert!(
            decode_list(input).is_err(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        let _ = decode_error(500, input);
    }
}

#[test]
fn decode_error_returns_none_for_non_error_bodies() {
    for input in [
        &b""[..],
        b"<html><body>Bad Gateway</body></html>",
        b"<Error><Message>no code</Message></Error>",
        b"\xEF\xBB\xBF<?xml version=\"1.0\"?><EnumerationResults />",
        b"\x00\xFF garbage",
    ] {
        assert_eq!(
            decode_error(502, input),
            None,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // An unknown code is kept as it is.
    let got = decode_error(
        409,
        &body("<Error><Code>DeletePending</Code><Message>Pending.</Message></Error>"),
    )
    .unwrap();
    assert_eq!(got.code, ErrorCode::Other("DeletePending".into()));
    assert_eq!(got.status, 409);
}

fn fixture_bodies() -> Vec<&'static [u8]> {
    fixtures().into_iter().map(|f| f.body).collect()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let list = decode_list(&bytes);
        let _ = decode_error(500, &bytes);
        if !bytes.windows(18).any(|w| w == b"EnumerationResults") {
            prop_assert!(list.is_err());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "(<[A-Za-z/!?]{0,3}|[A-Za-z ]{0,5}|>|&[a-z#0-9]{0,4};?|\"|=){0,80}") {
        let _ = decode_list(text.as_bytes());
        let _ = decode_error(400, text.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        index in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let bodies = fixture_bodies();
        let mut bytes = index.get(&bodies).to_vec();
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => {
                    bytes.remove(i);
                }
                _ => bytes.insert(i, byte),
            }
        }
        let _ = decode_list(&bytes);
        let _ = decode_error(500, &bytes);
    }
}

#[test]
fn rfc1123_formatting_matches_fixture_dates() {
    assert_eq!(
        format_rfc1123(ts("2024-07-12T18:45:30Z")),
        "Fri, 12 Jul 2024 18:45:30 GMT"
    );
}
