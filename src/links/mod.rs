//! Short links: the URLs in a message's text found, held to the allowed domains, and replaced by
//! `{public_base_url}/s/{code}`, one code per message and URL so a click names its recipient;
//! clicks counted apart from link previews and scanners.

mod bots;
mod clicks;
mod follow;
mod resolver;
mod rules;
mod urls;

pub use self::{
    bots::is_preview,
    clicks::{ClickRecorder, CLICK_QUEUE},
    follow::{follow, is_code, Follow, Gone},
    resolver::LinkResolver,
    rules::{DisallowedLink, LinkRules, Rewritten},
    urls::{find_links, FoundLink, LinkForm},
};
