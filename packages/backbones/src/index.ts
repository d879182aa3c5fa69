// Public API of @sparkmim/backbones: see README.md.
export { checkBackboneInput, withActiveSites } from './backbone';
export type { Backbone, BackboneForwardOptions, BackboneKind } from './backbone';
export {
  BasicBlock,
  Bottleneck,
  createResNet,
  RESNET_VARIANTS,
  ResNet,
  resnet101,
  resnet152,
  resnet18,
  resnet200,
  resnet34,
  resnet50,
} from './resnet';
export type { ResNetBlock, ResNetBlockType, ResNetConfig, ResNetForwardOptions, ResNetName, ResNetOptions } from './resnet';
export type { RowFeatures } from './resnet-rows';
export {
  CONVNEXT_VARIANTS,
  ConvNeXt,
  ConvNeXtBlock,
  convnextBase,
  convnextLarge,
  convnextSmall,
  convnextTiny,
  createConvNeXt,
} from './convnext';
export type { ConvNeXtConfig, ConvNeXtForwardOptions, ConvNeXtName, ConvNeXtOptions } from './convnext';
export {
  BACKBONE_NAMES,
  backboneConfigFromState,
  createBackbone,
  createBackboneFromConfig,
  namedBackboneConfig,
} from './registry';
export type { BackboneConfig, BackboneName, BackboneOptions } from './registry';
export { dropPath, gelu, Linear } from './layers';
export type { LinearConfig } from './layers';
export { backboneFromModule, checkBackboneContract } from './custom';
export type { BackboneModuleContext } from './custom';
export { createTinyConvNet, TinyConvNet } from './examples/tiny-convnet';
export type { TinyConvNetConfig } from './examples/tiny-convnet';
