use serde_json::json;

use crate::harness::TestServer;

async fn measure(s: &TestServer, body: &str) -> (String, u64, u64) {
    let (status, b) = s.send(json!({"to": "09012345678", "body": body})).await;
    assert_eq!(status, 202, "{b}");
    (
        b["encoding"].as_str().unwrap().to_string(),
        b["characters"].as_u64().unwrap(),
        b["segments"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn gsm_bodies_fit_160_in_one_part_and_153_per_part_after() {
    let s = TestServer::start().await;
    assert_eq!(measure(&s, &"a".repeat(160)).await, ("gsm7".into(), 160, 1));
    assert_eq!(measure(&s, &"a".repeat(161)).await, ("gsm7".into(), 161, 2));
    assert_eq!(measure(&s, &"a".repeat(306)).await, ("gsm7".into(), 306, 2));
    assert_eq!(measure(&s, &"a".repeat(307)).await, ("gsm7".into(), 307, 3));
    s.stop().await;
}

#[tokio::test]
async fn gsm_extension_characters_count_twice() {
    let s = TestServer::start().await;
    assert_eq!(measure(&s, &"{".repeat(80)).await, ("gsm7".into(), 80, 1));
    assert_eq!(measure(&s, &"€".repeat(81)).await, ("gsm7".into(), 81, 2));
    s.stop().await;
}

#[tokio::test]
async fn japanese_bodies_fit_70_in_one_part_and_67_per_part_after() {
    let s = TestServer::start().await;
    assert_eq!(measure(&s, &"あ".repeat(70)).await, ("ucs2".into(), 70, 1));
    assert_eq!(measure(&s, &"あ".repeat(71)).await, ("ucs2".into(), 71, 2));
    assert_eq!(
        measure(&s, &"あ".repeat(134)).await,
        ("ucs2".into(), 134, 2)
    );
    assert_eq!(
        measure(&s, &"あ".repeat(135)).await,
        ("ucs2".into(), 135, 3)
    );
    s.stop().await;
}

#[tokio::test]
async fn bodies_up_to_660_characters_are_accepted_and_661_is_message_too_long() {
    let s = TestServer::start().await;
    assert_eq!(
        measure(&s, &"あ".repeat(660)).await,
        ("ucs2".into(), 660, 10)
    );
    let (status, b) = s
        .send(json!({"to": "09012345678", "body": "あ".repeat(661)}))
        .await;
    assert_eq!(
        (status, b["code"].as_str(), b["field"].as_str()),
        (422, Some("message_too_long"), Some("body"))
    );
    s.stop().await;
}

#[tokio::test]
async fn max_characters_is_configurable() {
    let s = TestServer::with_delivery("max_characters = 70").await;
    assert_eq!(measure(&s, &"a".repeat(70)).await.2, 1);
    let (status, b) = s
        .send(json!({"to": "09012345678", "body": "a".repeat(71)}))
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (422, Some("message_too_long"))
    );
    s.stop().await;
}

#[tokio::test]
async fn emoji_take_two_units_and_are_never_split_across_parts() {
    let s = TestServer::start().await;
    assert_eq!(measure(&s, &"😀".repeat(35)).await, ("ucs2".into(), 35, 1));
    assert_eq!(measure(&s, &"😀".repeat(36)).await, ("ucs2".into(), 36, 2));
    // 66 units, an emoji (2 units), 66 units: 134 units, which two 67-unit parts hold only if
    // the emoji's surrogate pair is cut at the boundary (or if parts are counted as units / 67).
    // Kept whole, it opens part two, part one wastes a unit and the last い needs a third part.
    let first_boundary = format!("{}😀{}", "あ".repeat(66), "い".repeat(66));
    assert_eq!(measure(&s, &first_boundary).await, ("ucs2".into(), 133, 3));
    // The same at the second boundary: 201 units would fill three parts exactly if cut; whole,
    // the emoji opens part three and the body takes four.
    let second_boundary = format!("{}😀{}", "あ".repeat(133), "い".repeat(66));
    assert_eq!(measure(&s, &second_boundary).await, ("ucs2".into(), 200, 4));
    s.stop().await;
}
