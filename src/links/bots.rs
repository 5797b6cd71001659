//! Fetches of a short link that are not a person clicking: chat apps' link previews, search
//! crawlers and mail or SMS security scanners. The one list of them.

/// Lowercase fragments of the user agents of previewers, crawlers and scanners.
const PREVIEWERS: &[&str] = &[
    "slackbot",
    "slack-imgproxy",
    "facebookexternalhit",
    "facebookcatalog",
    "twitterbot",
    "line-poker",
    "linebot",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "skypeuripreview",
    "linkedinbot",
    "pinterestbot",
    "applebot",
    "googlebot",
    "google-inspectiontool",
    "adsbot-google",
    "bingbot",
    "bingpreview",
    "yandexbot",
    "baiduspider",
    "duckduckbot",
    "embedly",
    "iframely",
    "bitlybot",
    "microsoftpreview",
    "ms office",
    "proofpoint",
    "barracuda",
    "mimecast",
    "urlscan",
    "virustotal",
    "safebrowsing",
    "headlesschrome",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
];

/// Whether a fetch with this user agent (and method) is a preview or a scan, not a click: HEAD
/// requests and fetches without a user agent are never a person.
pub fn is_preview(head: bool, user_agent: Option<&str>) -> bool {
    let Some(agent) = user_agent.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    if head {
        return true;
    }
    let agent = agent.to_ascii_lowercase();
    PREVIEWERS.iter().any(|p| agent.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_and_scanners_are_told_from_handsets() {
        for agent in [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Twitterbot/1.0",
            "facebookexternalhit/1.1;line-poker/1.0",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ] {
            assert!(is_preview(false, Some(agent)), "{agent}");
        }
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        let cubot = "Mozilla/5.0 (Linux; Android 9; CUBOT P30) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36";
        assert!(!is_preview(false, Some(iphone)));
        assert!(!is_preview(false, Some(cubot)));
        assert!(is_preview(true, Some(iphone)), "HEAD is never a click");
        assert!(is_preview(false, None));
        assert!(is_preview(false, Some("  ")));
    }
}
