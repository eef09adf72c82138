//! ISO BMFF (fMP4/CMAF) init segments and fragments for live HLS.
