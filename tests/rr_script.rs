//! rr's `record_route` and `loose_route` run by the interpreter; the message is checked as it would
//! be written (Record-Route/Route headers, Request-URI) together with the next hop the forward path
//! gets (`Ctx::dst_uri`). Our address is 192.0.2.1:5060 (where the requests arrive).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use controlplane::cfg::compile_str;
use dataplane::modules::rr::{outbound_record_route, RecordRouted};
use dataplane::script::env::{ActionResult, Env, Target};
use dataplane::script::ir::{Program, Proto};
use dataplane::script::{exec, Ctx};
use dataplane::wire::Message;

struct RrEnv {
    program: Arc<Program>,
    replies: Vec<u16>,
}

impl Env for RrEnv {
    fn forward(&mut self, _: &mut Ctx, _: &Target<'_>, _: Option<Proto>) -> ActionResult {
        ActionResult::Ret(1)
    }
    fn send(&mut self, _: &mut Ctx, _: &Target<'_>, _: Option<Proto>) -> ActionResult {
        ActionResult::Ret(1)
    }
    fn log(&mut self, _: i32, _: &[u8]) {}
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn reply(&mut self, _: &mut Ctx, code: u16, _: &[u8]) -> ActionResult {
        self.replies.push(code);
        ActionResult::Ret(1)
    }
    fn program(&self) -> Option<&Program> {
        Some(&self.program)
    }
}

const LOOSE: &str = r#"
loadmodule "sl.so"
loadmodule "rr.so"
route {
	if (loose_route()) {
		sl_send_reply("299", "routed");
		break;
	};
	sl_send_reply("499", "not routed");
}
"#;

fn request(ruri: &str, extra: &str) -> Message {
    let text = format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1\r\n\
{extra}\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>;tag=b\r\n\
From: <sip:alice@example.com>;tag=a\r\n\
Call-ID: rr-1\r\n\
CSeq: 2 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

/// An initial request (no To tag).
fn initial(ruri: &str, extra: &str) -> Message {
    let text = String::from_utf8_lossy(&request(ruri, extra).to_bytes()).replace(";tag=b", "");
    Message::parse(Bytes::from(text)).unwrap()
}

fn run(script: &str, msg: Message, proto: Proto) -> (Ctx, RrEnv) {
    let program = compile_str("t.cfg", script)
        .unwrap_or_else(|d| panic!("{}", d.render()))
        .program;
    let mut env = RrEnv {
        program: Arc::new(program),
        replies: Vec::new(),
    };
    let mut ctx = Ctx::new(
        msg,
        "192.0.2.9:5060".parse().unwrap(),
        "192.0.2.1:5060".parse().unwrap(),
        proto,
    );
    let p = env.program.clone();
    exec(&p, &mut ctx, &mut env);
    (ctx, env)
}

fn written(ctx: &Ctx) -> String {
    String::from_utf8_lossy(&ctx.msg.to_bytes()).into_owned()
}

fn values(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .flat_map(|v| v.split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn uri(ctx: &Ctx) -> String {
    String::from_utf8_lossy(ctx.uri()).into_owned()
}

fn dst(ctx: &Ctx) -> Option<String> {
    ctx.dst_uri
        .as_ref()
        .map(|d| String::from_utf8_lossy(d).into_owned())
}

const RR: &str = "loadmodule \"rr.so\"\nroute { record_route(); }\n";

#[test]
fn record_route_names_the_inbound_address_above_existing_ones() {
    let (ctx, _) = run(RR, request("sip:bob@example.com", ""), Proto::Udp);
    assert_eq!(
        values(&written(&ctx), "Record-Route"),
        ["<sip:192.0.2.1:5060;lr>"]
    );
    let (ctx, _) = run(
        RR,
        request(
            "sip:bob@example.com",
            "Record-Route: <sip:p0.example.com;lr>\r\n",
        ),
        Proto::Tcp,
    );
    assert_eq!(
        values(&written(&ctx), "Record-Route"),
        [
            "<sip:192.0.2.1:5060;transport=tcp;lr>",
            "<sip:p0.example.com;lr>"
        ]
    );
    let full = "loadmodule \"rr.so\"\nmodparam(\"rr\", \"enable_full_lr\", 1)\nroute { record_route(); }\n";
    let (ctx, _) = run(full, request("sip:bob@example.com", ""), Proto::Udp);
    assert_eq!(
        values(&written(&ctx), "Record-Route"),
        ["<sip:192.0.2.1:5060;lr=on>"]
    );
}

#[test]
fn two_record_routes_when_the_request_changes_transport_or_family() {
    for extra in ["", "Record-Route: <sip:p0.example.com;lr>\r\n"] {
        let (mut ctx, env) = run(RR, request("sip:bob@example.com", extra), Proto::Udp);
        let rr: RecordRouted = RecordRouted::of(&ctx, &env).unwrap();
        // Same side out: nothing more.
        let mut same = ctx.msg.clone();
        assert!(!outbound_record_route(
            &mut same,
            &rr,
            "192.0.2.1:5060".parse().unwrap(),
            Proto::Udp
        ));
        // UDP in, TCP out: the outbound side on top.
        assert!(outbound_record_route(
            &mut ctx.msg,
            &rr,
            "192.0.2.1:5060".parse().unwrap(),
            Proto::Tcp
        ));
        let v = values(&written(&ctx), "Record-Route");
        assert_eq!(v[0], "<sip:192.0.2.1:5060;transport=tcp;lr>", "{v:?}");
        assert_eq!(v[1], "<sip:192.0.2.1:5060;lr>", "{v:?}");
        // IPv4 in, IPv6 out.
        let (mut ctx2, _) = run(RR, request("sip:bob@example.com", extra), Proto::Udp);
        assert!(outbound_record_route(
            &mut ctx2.msg,
            &rr,
            "[2001:db8::1]:5060".parse().unwrap(),
            Proto::Udp
        ));
        let v = values(&written(&ctx2), "Record-Route");
        assert_eq!(
            &v[..2],
            ["<sip:[2001:db8::1]:5060;lr>", "<sip:192.0.2.1:5060;lr>"]
        );
    }
    // The first header itself a Record-Route: the order still holds.
    let text = "INVITE sip:bob@example.com SIP/2.0\r\nRecord-Route: <sip:p0;lr>\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-2\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let (mut ctx, env) = run(RR, Message::parse(Bytes::from(text)).unwrap(), Proto::Udp);
    let rr = RecordRouted::of(&ctx, &env).unwrap();
    outbound_record_route(
        &mut ctx.msg,
        &rr,
        "192.0.2.1:5060".parse().unwrap(),
        Proto::Tcp,
    );
    assert_eq!(
        values(&written(&ctx), "Record-Route"),
        [
            "<sip:192.0.2.1:5060;transport=tcp;lr>",
            "<sip:192.0.2.1:5060;lr>",
            "<sip:p0;lr>"
        ]
    );
}

#[test]
fn loose_route_without_route_is_false() {
    let (_, env) = run(LOOSE, request("sip:bob@example.com", ""), Proto::Udp);
    assert_eq!(env.replies, [499]);
}

#[test]
fn loose_route_removes_us_and_routes_to_the_next_loose_router() {
    let (ctx, env) = run(
        LOOSE,
        request(
            "sip:bob@10.0.0.5",
            "Route: <sip:192.0.2.1;lr>, <sip:p2.example.com;lr>\r\nRoute: <sip:p3.example.com;lr>\r\n",
        ),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(uri(&ctx), "sip:bob@10.0.0.5", "Request-URI untouched");
    assert_eq!(dst(&ctx).as_deref(), Some("sip:p2.example.com;lr"));
    assert_eq!(
        values(&written(&ctx), "Route"),
        ["<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]
    );
}

#[test]
fn loose_route_preloaded_route_to_us_only_is_false_and_removed() {
    let (ctx, env) = run(
        LOOSE,
        initial("sip:bob@example.com", "Route: <sip:192.0.2.1:5060;lr>\r\n"),
        Proto::Udp,
    );
    assert_eq!(env.replies, [499], "the Request-URI decides");
    assert!(values(&written(&ctx), "Route").is_empty());
    assert!(ctx.dst_uri.is_none());
    // Within a dialog the same route set is routing: the request goes to the remote target.
    let (ctx, env) = run(
        LOOSE,
        request(
            "sip:bob@10.0.0.5:5062",
            "Route: <sip:192.0.2.1:5060;lr>\r\n",
        ),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(uri(&ctx), "sip:bob@10.0.0.5:5062");
    assert!(values(&written(&ctx), "Route").is_empty());
}

#[test]
fn loose_route_not_us_on_top_routes_there() {
    let (ctx, env) = run(
        LOOSE,
        request(
            "sip:bob@example.com",
            "Route: <sip:outbound.example.net;lr>\r\n",
        ),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(dst(&ctx).as_deref(), Some("sip:outbound.example.net;lr"));
    assert_eq!(
        values(&written(&ctx), "Route"),
        ["<sip:outbound.example.net;lr>"]
    );
}

#[test]
fn loose_route_after_a_strict_router_takes_the_last_route_as_request_uri() {
    // A strict router put our Record-Route URI into the Request-URI (§16.4).
    let (ctx, env) = run(
        LOOSE,
        request(
            "sip:192.0.2.1;lr",
            "Route: <sip:p2.example.com;lr>, <sip:bob@10.0.0.5>\r\n",
        ),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(uri(&ctx), "sip:bob@10.0.0.5");
    assert_eq!(dst(&ctx).as_deref(), Some("sip:p2.example.com;lr"));
    assert_eq!(values(&written(&ctx), "Route"), ["<sip:p2.example.com;lr>"]);
    // Only that one Route: it becomes the Request-URI and the request is routed by it.
    let (ctx, env) = run(
        LOOSE,
        request("sip:192.0.2.1;lr", "Route: <sip:bob@10.0.0.5>\r\n"),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(uri(&ctx), "sip:bob@10.0.0.5");
    assert!(values(&written(&ctx), "Route").is_empty());
    // A REGISTER to our domain (no lr) is not mistaken for a strict router's request.
    let (ctx, env) = run(
        LOOSE,
        initial("sip:192.0.2.1", "Route: <sip:192.0.2.1;lr>\r\n"),
        Proto::Udp,
    );
    assert_eq!(env.replies, [499]);
    assert_eq!(uri(&ctx), "sip:192.0.2.1");
}

#[test]
fn loose_route_toward_a_strict_router_rewrites_the_request_uri() {
    let (ctx, env) = run(
        LOOSE,
        request(
            "sip:bob@10.0.0.5",
            "Route: <sip:192.0.2.1;lr>\r\nRoute: <sip:strict.example.com>, <sip:p4.example.com;lr>\r\n",
        ),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(uri(&ctx), "sip:strict.example.com");
    assert!(ctx.dst_uri.is_none());
    // §16.6 step 6: the old Request-URI goes to the end of the Route set.
    assert_eq!(
        values(&written(&ctx), "Route"),
        ["<sip:p4.example.com;lr>", "<sip:bob@10.0.0.5>"]
    );
}

#[test]
fn loose_route_removes_both_of_a_double_record_route() {
    let (ctx, env) = run(
        LOOSE,
        request(
            "sip:bob@10.0.0.5",
            "Route: <sip:192.0.2.1:5060;transport=tcp;lr>, <sip:192.0.2.1:5060;lr>, <sip:p5.example.com;lr>\r\n",
        ),
        Proto::Udp,
    );
    assert_eq!(env.replies, [299]);
    assert_eq!(dst(&ctx).as_deref(), Some("sip:p5.example.com;lr"));
    assert_eq!(values(&written(&ctx), "Route"), ["<sip:p5.example.com;lr>"]);
}

#[test]
fn loose_route_with_a_broken_route_header_is_false_with_400() {
    let (ctx, env) = run(
        LOOSE,
        request("sip:bob@example.com", "Route: <sip:192.0.2.1;lr\r\n"),
        Proto::Udp,
    );
    assert_eq!(env.replies, [499]);
    assert_eq!(ctx.last_error.map(|e| e.0), Some(400));
}
