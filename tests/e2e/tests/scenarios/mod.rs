//! The seeds' flows end to end over gRPC, one test per flow: the merchant side (seed 000's PSP
//! retrieval request to won, Stripe's staged and submitted evidence and its close, seed 004's
//! money events) and the issuer side (Synctera's flow). Rule ids (M…, I…) are those of
//! docs/lifecycle.md.

mod issuer;
mod merchant;
