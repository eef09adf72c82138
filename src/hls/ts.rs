//! MPEG-TS segments for the plain HLS variant (HLS version 3).
