-- Procedural terrain, one square chunk at a time: heights from fractal
-- value noise whose coordinates are themselves bent by noise (domain
-- warping), coloured by height and lit by their slope. A chunk depends
-- only on the seed and its coordinates, so chunks can be made in any
-- order, anywhere, and side by side they join without seams.
--
-- Plain Lua, and no love.*: the game's ppe workers run it in fresh LuaJIT
-- states of their own, and the game's check runs it again in its own.
local floor, char, concat = math.floor, string.char, table.concat

local SIZE = 128     -- cells (pixels) on a chunk's side
local OCTAVES = 8    -- layers of noise, each twice as fine as the last
local SCALE = 1 / 256  -- the coarsest layer's cells per pixel
local SS = 3         -- samples on a pixel's side (anti-aliasing)

-- A permutation of 0..255 drawn from the seed by the Park-Miller
-- generator (every product is below 2^53, so exact with doubles too),
-- written twice so that an index plus 255 needs no wrapping.
local function permutation(seed)
  local p, x = {}, seed % 2147483646 + 1
  for i = 0, 255 do p[i] = i end
  for i = 255, 1, -1 do
    x = x * 16807 % 2147483647
    local j = x % (i + 1)
    p[i], p[j] = p[j], p[i]
  end
  for i = 0, 255 do p[i + 256] = p[i] end
  return p
end

-- Value noise at (x, y), in 0..1: the permutation gives each lattice
-- point a value, smoothly blended across the square around (x, y).
local function noise(p, x, y)
  local xi, yi = floor(x), floor(y)
  local u, v = x - xi, y - yi
  u, v = u * u * (3 - 2 * u), v * v * (3 - 2 * v)
  xi, yi = xi % 256, yi % 256
  local a, b = p[xi] + yi, p[xi + 1] + yi
  local top = p[a] + (p[b] - p[a]) * u
  local bottom = p[a + 1] + (p[b + 1] - p[a + 1]) * u
  return (top + (bottom - top) * v) / 255
end

-- Fractal noise: OCTAVES layers, each at twice the frequency and half
-- the weight of the last, shifted so that their lattices do not line up.
local function fbm(p, x, y)
  local sum, amp = 0, 0.5
  for _ = 1, OCTAVES do
    sum = sum + amp * noise(p, x, y)
    x, y, amp = x * 2 + 19.19, y * 2 + 7.73, amp * 0.5
  end
  return sum / (1 - 0.5 ^ OCTAVES)
end

-- The height of world cell (x, y), in 0..1, warped twice.
local function height(p, x, y)
  x, y = x * SCALE, y * SCALE
  local qx, qy = fbm(p, x, y), fbm(p, x + 5.2, y + 1.3)
  local rx = fbm(p, x + 4 * qx + 1.7, y + 4 * qy + 9.2)
  local ry = fbm(p, x + 4 * qx + 8.3, y + 4 * qy + 2.8)
  return fbm(p, x + 4 * rx, y + 4 * ry)
end

-- Colours by height: { top of the band, r, g, b }, blended within a band.
local BANDS = {
  { 0.40, 20, 50, 120 }, { 0.47, 40, 100, 170 },   -- deep, shallow water
  { 0.50, 210, 200, 140 },                         -- sand
  { 0.58, 80, 150, 60 }, { 0.66, 40, 100, 40 },    -- grass, forest
  { 0.74, 120, 110, 100 }, { 1.01, 245, 245, 250 }, -- rock, snow
}

local function colour(h)
  local lo = 0
  for i = 1, #BANDS do
    local band = BANDS[i]
    if h < band[1] or i == #BANDS then
      local prev = BANDS[i - 1] or band
      local t = (h - lo) / (band[1] - lo)
      return prev[2] + (band[2] - prev[2]) * t,
             prev[3] + (band[3] - prev[3]) * t,
             prev[4] + (band[4] - prev[4]) * t
    end
    lo = band[1]
  end
end

local function byte(x)
  if x <= 0 then return 0 elseif x >= 255 then return 255 end
  return floor(x + 0.5)
end

-- Chunk (cx, cy) of the world of 'seed': SIZE x SIZE pixels, as a string
-- of RGBA bytes, row by row (what love.image.newImageData takes). Each
-- pixel is the mean of SS x SS samples, so that coasts and snow lines
-- are smooth rather than stairs.
local function chunk(seed, cx, cy)
  local p = permutation(seed)
  local n, x0, y0 = SS * SIZE, cx * SIZE, cy * SIZE
  -- Heights of the samples, one more on the right and below, for slopes.
  local h = {}
  for j = 0, n do
    local row = {}
    for i = 0, n do row[i] = height(p, x0 + i / SS, y0 + j / SS) end
    h[j] = row
  end
  -- The colour of sample (i, j), lit from the top left: brighter where
  -- the land rises that way, water flat.
  local function sample(i, j)
    local z = h[j][i]
    local r, g, b = colour(z)
    if z < 0.47 then return r, g, b end
    local light = 1 + 40 * SS * ((z - h[j][i + 1]) + (z - h[j + 1][i]))
    return r * light, g * light, b * light
  end
  local rows = {}
  for y = 0, SIZE - 1 do
    local px = {}
    for x = 0, SIZE - 1 do
      local r, g, b = 0, 0, 0
      for j = SS * y, SS * y + SS - 1 do
        for i = SS * x, SS * x + SS - 1 do
          local sr, sg, sb = sample(i, j)
          r, g, b = r + sr, g + sg, b + sb
        end
      end
      local k = SS * SS
      px[x + 1] = char(byte(r / k), byte(g / k), byte(b / k), 255)
    end
    rows[y + 1] = concat(px)
  end
  return concat(rows)
end

return { SIZE = SIZE, chunk = chunk, height = height }
