//! Portcullis: a security and compliance gateway for HTTP APIs.
//!
//! A request passes the stages in this order (see [`pipeline`]):
//! [`normalize`] → [`route`] → [`authn`] (or [`apikey`]) → [`ratelimit`] → [`authz`] →
//! forward ([`proxy::upstream`]) → [`protect`]. [`config`] reads the file
//! every stage is built from; [`admin`] serves health and metrics.

pub mod admin;
pub mod apikey;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod config;
pub mod feed;
pub mod logging;
pub mod mask;
pub mod normalize;
pub mod pipeline;
pub mod protect;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod review;
pub mod revocation;
pub mod route;
pub mod run;
pub mod tenancy;
pub mod token_service;
pub mod upstream_headers;
