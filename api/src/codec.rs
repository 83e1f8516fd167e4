//! gRPC codecs that leave one side of a call as serialized bytes, for the messages that carry
//! a whole trial history (`GetSuggestionsRequest`): the suggestion server decodes the request
//! from its bytes itself (`katib-suggestion`'s `wire`), and `katib run` sends a request it
//! assembled from each trial's cached encoding. The other side is prost, as in the generated
//! code, so both stay wire-compatible with every Katib client and server.

use std::marker::PhantomData;

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The gRPC path of `Suggestion.GetSuggestions`.
pub const GET_SUGGESTIONS_PATH: &str = "/api.v1.beta1.Suggestion/GetSuggestions";

/// Server side: requests arrive as their bytes (split off tonic's buffer without a copy),
/// replies of type `Reply` are encoded by prost.
#[derive(Debug)]
pub struct BytesRequestCodec<Reply>(PhantomData<fn() -> Reply>);

/// Client side: requests go out as bytes already serialized, replies of type `Reply` are
/// decoded by prost.
#[derive(Debug)]
pub struct BytesSendCodec<Reply>(PhantomData<fn() -> Reply>);

macro_rules! new_and_default {
    ($codec:ident) => {
        impl<Reply> $codec<Reply> {
            /// The codec.
            pub fn new() -> Self {
                Self(PhantomData)
            }
        }

        impl<Reply> Default for $codec<Reply> {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}
new_and_default!(BytesRequestCodec);
new_and_default!(BytesSendCodec);

impl<Reply: prost::Message + Default + Send + 'static> Codec for BytesRequestCodec<Reply> {
    type Encode = Reply;
    type Decode = Bytes;
    type Encoder = ProstEncoder<Reply>;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<Reply, Reply>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

impl<Reply: prost::Message + Default + Send + 'static> Codec for BytesSendCodec<Reply> {
    type Encode = Bytes;
    type Decode = Reply;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<Reply>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<Reply, Reply>::default().decoder()
    }
}

/// A message's bytes, as received.
#[derive(Debug)]
pub struct BytesDecoder;

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Bytes sent as the message, unchanged.
#[derive(Debug)]
pub struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
