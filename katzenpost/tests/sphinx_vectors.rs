//! Sphinx against the 2019 Go vectors (`sphinx_vectors.json`,
//! `sphinx_commands_vectors.json`): every hop byte for byte.

use katzenpost::geometry::HEADER_LENGTH;
use katzenpost::sphinx::commands::{parse_block, RoutingCommand};
use katzenpost::sphinx::{packet_from_surb, unwrap_packet, SurbKeys, UnwrapAction};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!(
        "{}/../../shared/katzenpost-2019/{}",
        env!("CARGO_MANIFEST_DIR"),
        name
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("test vector file {path} is missing or unreadable: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {path}: {e}"))
}

fn hx(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    hx(v).try_into().expect("right length")
}

#[test]
fn routing_command_vectors_both_directions() {
    let v = load("sphinx_commands_vectors.json");
    let cases = [
        (
            RoutingCommand::NextNodeHop {
                id: arr(&v["NextHopID"]),
                mac: arr(&v["NextHopMAC"]),
            },
            "NextHopCmdWant",
        ),
        (
            RoutingCommand::Recipient(arr(&v["RecipientID"])),
            "RecipientCmdWant",
        ),
        (
            RoutingCommand::SurbReply(arr(&v["SURBReplyID"])),
            "SURBReplyCmdWant",
        ),
        (
            RoutingCommand::NodeDelay(v["NodeDelay"].as_u64().unwrap() as u32),
            "NodeDelayCmdWant",
        ),
    ];
    for (cmd, field) in cases {
        let want = hx(&v[field]);
        assert_eq!(cmd.to_bytes(), want, "{field}");
        assert_eq!(cmd.encoded_len(), want.len());
        assert_eq!(
            parse_block(&want).unwrap(),
            vec![cmd.clone()],
            "{field} parse"
        );
        // Inside a zero-filled 82-byte block too.
        let mut block = [0u8; 82];
        block[..want.len()].copy_from_slice(&want);
        assert_eq!(parse_block(&block).unwrap(), vec![cmd], "{field} in block");
    }
}

fn expected_commands(case: &Value, hop: usize, next_packet: &[u8]) -> Vec<RoutingCommand> {
    let mut want: Vec<RoutingCommand> = case["Path"][hop]["Commands"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| parse_block(&hx(c)).unwrap())
        .collect();
    let nodes = case["Nodes"].as_array().unwrap();
    if hop + 1 < nodes.len() {
        let mut mac = [0u8; 16];
        mac.copy_from_slice(&next_packet[HEADER_LENGTH - 16..HEADER_LENGTH]);
        want.push(RoutingCommand::NextNodeHop {
            id: arr(&nodes[hop + 1]["ID"]),
            mac,
        });
    }
    want
}

#[test]
fn all_sphinx_vectors_every_hop() {
    let v = load("sphinx_vectors.json");
    let cases = v.as_array().unwrap();
    assert_eq!(cases.len(), 10);
    let mut surb_cases = 0;
    for (ci, case) in cases.iter().enumerate() {
        let nodes = case["Nodes"].as_array().unwrap();
        let packets: Vec<Vec<u8>> = case["Packets"].as_array().unwrap().iter().map(hx).collect();
        assert_eq!(packets.len(), nodes.len() + 1);
        let payload = hx(&case["Payload"]);
        let surb = hx(&case["Surb"]);
        let is_surb = !surb.is_empty();

        if is_surb {
            surb_cases += 1;
            let (first, reply) = packet_from_surb(&surb, &payload).unwrap();
            assert_eq!(first.to_vec(), hx(&nodes[0]["ID"]), "case {ci} first hop");
            assert_eq!(reply, packets[0], "case {ci}: reply from SURB");
        }

        let mut buf = packets[0].clone();
        for (hop, node) in nodes.iter().enumerate() {
            assert_eq!(buf, packets[hop], "case {ci} hop {hop} input");
            let sk: [u8; 32] = arr(&node["PrivateKey"]);
            let out =
                unwrap_packet(&sk, &mut buf).unwrap_or_else(|e| panic!("case {ci} hop {hop}: {e}"));
            let tag = katzenpost::sphinx::packet_replay_tag(&packets[hop]).unwrap();
            assert_eq!(out.replay_tag, tag);
            let last = hop + 1 == nodes.len();
            let want_cmds =
                expected_commands(case, hop, if last { &[] } else { &packets[hop + 1] });
            assert_eq!(out.commands, want_cmds, "case {ci} hop {hop} commands");
            match out.action {
                UnwrapAction::Forward { next_hop } => {
                    assert!(!last, "case {ci}: forward at the last hop");
                    assert_eq!(next_hop.to_vec(), hx(&nodes[hop + 1]["ID"]));
                    assert_eq!(buf, packets[hop + 1], "case {ci} hop {hop} output");
                }
                UnwrapAction::Deliver { payload: range } => {
                    assert!(last && !is_surb, "case {ci}: unexpected delivery");
                    assert_eq!(&buf[range], &payload[..], "case {ci} payload");
                }
                UnwrapAction::SurbReply {
                    surb_id,
                    payload: range,
                } => {
                    assert!(last && is_surb, "case {ci}: unexpected SURB reply");
                    assert!(out.commands.contains(&RoutingCommand::SurbReply(surb_id)));
                    let keys = SurbKeys::from_bytes(&hx(&case["SurbKeys"])).unwrap();
                    assert_eq!(
                        keys.decrypt(&buf[range]).unwrap(),
                        payload,
                        "case {ci} SURB payload"
                    );
                }
            }
        }
        assert!(packets[nodes.len()].is_empty());
    }
    assert_eq!(surb_cases, 5);
}
