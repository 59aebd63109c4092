"""Plain lowercase English words: the default vocabulary of the token families.

The paper draws its token-task items from a model vocabulary, "not digit
strings"; a fixed list of ordinary words keeps instances readable and stable
across tokenizers. Order matters (seeded draws index into it): only append.
"""

_WORD_LIST = """
    apple arrow badge bakery balloon bamboo banana banner barrel basket beacon
    beetle bell bench berry bicycle blanket blossom boat bonnet boulder bottle
    bracelet branch bread brick bridge broom bucket buffalo bugle bundle butter
    button cabin cactus camel candle canoe canyon carpet carrot castle cattle
    cedar cellar chalk cherry chimney circus cliff cloak clock cloud clover coach
    cobalt coconut collar comet copper coral cotton cradle crane crater crayon
    cricket crown crystal cucumber curtain cushion daisy dagger desert diamond
    dolphin donkey dragon drum eagle easel eclipse elbow ember engine falcon
    feather fence ferry fiddle flannel flute fountain fox fern galaxy garden
    garlic geyser ginger glacier glove goat goblet granite grape gravel guitar
    hammer harbor harp hazel helmet heron hive honey horizon hornet husk iceberg
    igloo island ivory jacket jaguar jasmine jelly jewel jungle kayak kettle
    kitten kiwi ladder lagoon lantern larch lemon lentil lettuce lighthouse lily
    lizard lobster locket lumber magnet mango maple marble meadow melon mirror
    mitten monkey moose mosaic moth mountain mule mushroom needle nest nickel
    nutmeg oak oasis olive onion orbit orchard orchid otter owl oyster paddle
    palace panda panther parrot peach peanut pebble pelican pepper piano pigeon
    pillow pine pirate planet plum pocket pony poppy potato prairie pumpkin
    puppet quail quartz quill rabbit raccoon radish raft raisin raven reef ribbon
    river robin rocket saddle salmon sandal satchel saucer scarf scooter seal
    shovel silver skate sled sloth snail sparrow spider spoon squirrel stable
    starfish statue stone straw sugar summit swan sword tablet tiger timber toad
    tomato torch tortoise tractor trumpet tulip tunnel turnip turtle umbrella
    valley velvet violin volcano wagon walnut walrus wand wheat whistle willow
    window wizard wolf yacht yarn zebra zipper acorn anchor anvil apron armadillo
    attic avocado axle badger bagel banjo barley basil bassoon beaver biscuit
    bison blender bobcat bonfire bouquet bramble brook buckle bunker burrow
    cabbage caramel cargo cashew catfish cauldron celery chapel cheetah chestnut
    chisel cinnamon citadel clam clarinet cocoa compass cookie cork corridor
    cougar coyote crab cranberry crocodile cupboard cypress dandelion denim
    dingo dove dune dynamo elephant elk emerald fig finch flamingo flask fossil
    frog gazelle gecko gerbil giraffe glider gondola gorilla gourd grasshopper
    griffin grove gull hamster harness hatchet hedgehog hemlock hippo hyena
    iguana inkwell jackal jigsaw juniper kangaroo kelp kernel koala ladle
    lavender leopard lime llama lynx macaw magpie mallet manatee mandolin
    marigold marmot meteor mole mongoose moss muffin mussel narwhal nectar newt
    noodle oatmeal octopus opal orca ostrich oven paprika parsley peacock pear
    penguin periscope pheasant pickle pistachio platypus pond porcupine pretzel
    puffin python quince quiver ravioli reindeer rhubarb rhino saffron sapphire
    sardine scallop scorpion seahorse shrimp skunk spinach sponge spruce stork
    sunflower swallow tambourine tangerine tapestry teapot thimble thistle
    thrush toucan trout truffle tuba tundra turban tweed urchin vanilla vulture
    waffle wasp weasel whale wheelbarrow wombat woodpecker wren yak yogurt
    abacus almond amber antelope apricot aquarium archer asparagus aster
    awning azalea beech beret blackbird bluebell bobsled boomerang broccoli
    bulldozer cabinet calico camellia canary cantaloupe cardinal carousel
    catapult cauliflower chameleon chandelier chickpea chipmunk cobbler
    condor cormorant crocus crumpet cuckoo cutlass daffodil dahlia dewdrop
    dodo drawbridge driftwood dumpling eggplant eucalyptus falafel ferret
    firefly flagpole footbridge foxglove gargoyle gingham goldfinch gooseberry
    grapefruit greenhouse hammock harmonica hawthorn hazelnut hibiscus hyacinth
    icicle jellyfish kestrel kingfisher kumquat labyrinth ladybug lemur
    limestone lollipop macaroni magnolia mammoth marshmallow mastiff meerkat
    minnow mistletoe molasses monsoon mulberry nightingale nutcracker ocelot
    okapi origami pagoda pangolin papaya parsnip partridge pecan peppermint
    persimmon petunia piccolo pineapple pinwheel plover pomegranate porridge
    primrose quokka radiator rattan redwood rosemary rutabaga sailboat
    salamander sandpiper sassafras saxophone scarecrow sequoia shamrock
    snapdragon snowflake sorrel stingray sycamore tadpole tarantula thyme
    toboggan trombone tumbleweed turquoise ukulele vineyard wallaby warbler
    waterfall whippet wisteria woodchuck xylophone zucchini
"""

WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())
