//! A client that delivers CloudEvents to a Direktiv namespace's broadcast endpoint in structured mode, with classified outcomes
